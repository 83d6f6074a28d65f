//! The server name (SNI, RFC 6066 §3) of a TLS ClientHello, and nothing else of it.
//!
//! Hand-written rather than `tls-parser`: that crate (on `nom`, `nom-derive`, `phf`,
//! `rusticata-macros`, `num_enum`) parses a whole, well-formed ClientHello into owned
//! structures, where `flow` holds a bounded prefix that may stop anywhere — inside the second
//! record, or after the extension it wants — and needs one field from it. The walk below reads
//! length-prefixed fields with bounds checks only (no allocation but the name it returns), takes
//! extensions in any order, and never panics (property tests feed it arbitrary bytes).

/// Handshake records (`0x16`) reassembled at most up to this many bytes (a ClientHello with
/// post-quantum key shares is ~1.8 KB; a few records' worth is plenty).
const MAX_HANDSHAKE: usize = 16 * 1024;
const RECORD_HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// The host_name of the TLS ClientHello that starts this TLS record stream prefix: one or more
/// handshake records (the ClientHello may span several). `None` when the bytes are not a
/// ClientHello, or the prefix ends before the server_name extension, or it has none.
pub fn client_hello_sni(bytes: &[u8]) -> Option<String> {
    handshake_sni(&handshake_bytes(bytes)?)
}

/// The host_name of a ClientHello handshake message without a record header (the form QUIC's
/// CRYPTO frames carry it in); the message may be cut short.
pub fn handshake_sni(handshake: &[u8]) -> Option<String> {
    let mut r = Reader::new(handshake);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let length = r.u24()?;
    // Only what the message holds, even if more follows.
    let mut body = Reader::new(r.take_up_to(length));
    let version = body.u16()?;
    if version >> 8 != 3 {
        return None;
    }
    body.skip(32)?; // random
    let session_id = body.u8()? as usize;
    if session_id > 32 {
        return None;
    }
    body.skip(session_id)?;
    let suites = body.u16()? as usize;
    body.skip(suites)?;
    let compression = body.u8()? as usize;
    body.skip(compression)?;
    let extensions_len = body.u16()? as usize;
    let mut extensions = Reader::new(body.take_up_to(extensions_len));
    // Extensions in any order; one cut by the end of the prefix ends the walk.
    while let (Some(kind), Some(len)) = (extensions.u16(), extensions.u16()) {
        let data = extensions.take(len as usize)?;
        if kind == EXT_SERVER_NAME {
            return server_name(data);
        }
    }
    None
}

/// The first host_name of a server_name extension's ServerNameList.
fn server_name(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let list_len = r.u16()? as usize;
    let mut list = Reader::new(r.take(list_len)?);
    while let Some(kind) = list.u8() {
        let len = list.u16()? as usize;
        let name = list.take(len)?;
        if kind == HOST_NAME {
            return host_name(name);
        }
    }
    None
}

/// A DNS host name as RFC 6066 wants it: ASCII letters, digits, `-`, `_`, `.`; no trailing dot;
/// at most 255 bytes. Anything else is not reported (it would not be a name).
fn host_name(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// The handshake bytes of the leading run of handshake records, concatenated (a record cut by
/// the end of the prefix contributes what is there).
fn handshake_bytes(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while let Some(kind) = r.u8() {
        if kind != RECORD_HANDSHAKE {
            break;
        }
        let version = r.u16()?;
        // SSL 3.0 to TLS 1.3 on the record layer (TLS 1.3 writes 0x0301 or 0x0303).
        if version >> 8 != 3 || version & 0xff > 4 {
            return None;
        }
        let length = r.u16()? as usize;
        // A record is at most 2^14 bytes of plaintext (RFC 8446 §5.1); a ClientHello is in the
        // clear.
        if length == 0 || length > 16 * 1024 {
            return None;
        }
        out.extend_from_slice(r.take_up_to(length));
        if out.len() >= MAX_HANDSHAKE {
            break;
        }
        // Stop once the first handshake message is whole.
        if let [_, a, b, c, ..] = out[..] {
            let message = u32::from_be_bytes([0, a, b, c]) as usize;
            if out.len() >= message + 4 {
                break;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Bounds-checked big-endian reads over a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Some(head)
    }

    /// At most `len` bytes: what there is of a field the prefix cut.
    fn take_up_to(&mut self, len: usize) -> &'a [u8] {
        let len = len.min(self.bytes.len());
        self.take(len).unwrap_or_default()
    }

    fn skip(&mut self, len: usize) -> Option<()> {
        self.take(len).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize)
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
