//! QUIC (RFC 9000, v2: RFC 9369): is a UDP payload a long-header packet of QUIC v1/v2, and the
//! server name of a client's Initial.
//!
//! Initial packets are protected with keys anyone can derive from the packet's Destination
//! Connection ID (RFC 9001 §5.2), so the ClientHello inside is readable: remove the header
//! protection (AES-128 on a sample of the ciphertext), open the payload (AES-128-GCM), gather
//! the CRYPTO frames by offset and read the SNI with [`super::tls::handshake_sni`]. The
//! primitives are `ring`'s (HKDF-SHA256, AES-128-GCM, QUIC header protection), already in the
//! tree under rustls; nothing of the decrypted payload but the name is kept.

use ring::{aead, hkdf};

use super::tls::handshake_sni;

pub const VERSION_1: u32 = 0x0000_0001;
pub const VERSION_2: u32 = 0x6b33_43cf;

/// RFC 9001 §5.2.
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
/// RFC 9369 §3.3.1.
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
const MAX_CID: usize = 20;
/// CRYPTO data gathered at most (a ClientHello is a few KiB at most).
const MAX_CRYPTO: u64 = 16 * 1024;
/// Packets looked at in one datagram.
const MAX_COALESCED: usize = 8;

/// Long-header packet types (RFC 9000 §17.2; RFC 9369 §3.2 permutes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

fn long_type(version: u32, bits: u8) -> Option<LongType> {
    use LongType::*;
    match (version, bits & 3) {
        (VERSION_1, 0) | (VERSION_2, 1) => Some(Initial),
        (VERSION_1, 1) | (VERSION_2, 2) => Some(ZeroRtt),
        (VERSION_1, 2) | (VERSION_2, 3) => Some(Handshake),
        (VERSION_1, 3) | (VERSION_2, 0) => Some(Retry),
        _ => None,
    }
}

/// A long-header packet's fields, as far as they are in the clear.
struct LongHeader<'a> {
    version: u32,
    kind: LongType,
    dcid: &'a [u8],
    /// Offset of the packet number (Initial, 0-RTT, Handshake).
    pn_offset: usize,
    /// The packet's end in the datagram (the Length field), clamped to the bytes present.
    end: usize,
    /// Whether the Length field's bytes are all present.
    whole: bool,
}

/// Is this UDP payload a QUIC v1 or v2 long-header Initial, 0-RTT or Handshake packet? The
/// fixed bit is set, the connection ids fit, and an Initial's token and length fields parse.
/// Works on a prefix (the Length may reach past it).
pub fn is_quic_long_header(bytes: &[u8]) -> bool {
    parse_long_header(bytes).is_some_and(|h| h.kind != LongType::Retry)
}

fn parse_long_header(bytes: &[u8]) -> Option<LongHeader<'_>> {
    let first = *bytes.first()?;
    // Long header form, fixed bit (an Initial comes before any transport parameter that could
    // grease it away, RFC 9287).
    if first & 0xc0 != 0xc0 {
        return None;
    }
    let version = u32::from_be_bytes(bytes.get(1..5)?.try_into().ok()?);
    let kind = long_type(version, first >> 4)?;
    let mut pos = 5;
    let dcid_len = *bytes.get(pos)? as usize;
    if dcid_len > MAX_CID {
        return None;
    }
    let dcid = bytes.get(pos + 1..pos + 1 + dcid_len)?;
    pos += 1 + dcid_len;
    let scid_len = *bytes.get(pos)? as usize;
    if scid_len > MAX_CID {
        return None;
    }
    pos += 1 + scid_len;
    if pos > bytes.len() {
        return None;
    }
    if kind == LongType::Retry {
        return Some(LongHeader {
            version,
            kind,
            dcid,
            pn_offset: pos,
            end: bytes.len(),
            whole: false,
        });
    }
    if kind == LongType::Initial {
        let (token_len, n) = varint(bytes.get(pos..)?)?;
        pos = pos
            .checked_add(n)?
            .checked_add(usize::try_from(token_len).ok()?)?;
    }
    let (length, n) = varint(bytes.get(pos..)?)?;
    pos += n;
    // At least a 1-byte packet number and a 16-byte tag.
    if length < 17 {
        return None;
    }
    let end = pos.checked_add(usize::try_from(length).ok()?)?;
    Some(LongHeader {
        version,
        kind,
        dcid,
        pn_offset: pos,
        end: end.min(bytes.len()),
        whole: end <= bytes.len(),
    })
}

/// The SNI of the client Initial(s) in this datagram: every coalesced Initial packet that opens
/// with the client Initial keys of its DCID contributes its CRYPTO frames; the data contiguous
/// from offset 0 is read as a ClientHello (which may be cut: a ClientHello spanning two
/// datagrams gives its name when the part here holds it). `None` for anything else.
pub fn initial_sni(datagram: &[u8]) -> Option<String> {
    let mut initials = InitialCrypto::default();
    initials.add_datagram(datagram);
    initials.sni()
}

/// The CRYPTO data of a connection's client Initials, fed datagram by datagram: a ClientHello
/// with post-quantum key shares (Chrome's, ~1.8 KB) spans the first two datagrams, and its
/// server_name extension may sit in either. Bounded to 16 KiB of CRYPTO data.
#[derive(Clone, Debug, Default)]
pub struct InitialCrypto {
    crypto: Crypto,
}

impl InitialCrypto {
    /// Adds the CRYPTO frames of every client Initial in this datagram (coalesced packets
    /// included). Returns whether one opened.
    pub fn add_datagram(&mut self, datagram: &[u8]) -> bool {
        let mut opened = false;
        let mut rest = datagram;
        for _ in 0..MAX_COALESCED {
            let Some(header) = parse_long_header(rest) else {
                break;
            };
            if !header.whole {
                break;
            }
            if header.kind == LongType::Initial {
                if let Some(payload) = open_initial(&rest[..header.end], &header) {
                    self.crypto.add_frames(&payload);
                    opened = true;
                }
            }
            rest = &rest[header.end..];
        }
        opened
    }

    /// The SNI of the ClientHello as far as its data is contiguous from offset 0.
    pub fn sni(&self) -> Option<String> {
        handshake_sni(&self.crypto.contiguous())
    }
}

/// The client's Initial packet protection (RFC 9001 §5.2; RFC 9369 §3.3 for v2's salt and
/// labels).
struct InitialKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

impl InitialKeys {
    fn client(version: u32, dcid: &[u8]) -> Option<InitialKeys> {
        let (key, iv, hp) = client_key_material(version, dcid)?;
        Some(InitialKeys {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).ok()?),
            iv,
            hp: aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).ok()?,
        })
    }
}

/// The client's Initial key, IV and header protection key for this version and DCID.
fn client_key_material(version: u32, dcid: &[u8]) -> Option<([u8; 16], [u8; 12], [u8; 16])> {
    let (salt, prefix): (&[u8], &str) = match version {
        VERSION_1 => (&SALT_V1, "quic"),
        VERSION_2 => (&SALT_V2, "quicv2"),
        _ => return None,
    };
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, "client in", &mut secret)?;
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &secret);
    let mut key = [0u8; 16];
    let mut iv = [0u8; 12];
    let mut hp = [0u8; 16];
    expand_label(&client, &format!("{prefix} key"), &mut key)?;
    expand_label(&client, &format!("{prefix} iv"), &mut iv)?;
    expand_label(&client, &format!("{prefix} hp"), &mut hp)?;
    Some((key, iv, hp))
}

/// An output length for `ring`'s HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &str, out: &mut [u8]) -> Option<()> {
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label.as_bytes(), &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// Removes header protection and opens one Initial packet (`packet`: exactly its bytes).
fn open_initial(packet: &[u8], header: &LongHeader<'_>) -> Option<Vec<u8>> {
    let keys = InitialKeys::client(header.version, header.dcid)?;
    let pn_offset = header.pn_offset;
    let sample = packet.get(pn_offset + 4..pn_offset + 20)?;
    let mask = keys.hp.new_mask(sample).ok()?;
    let first = packet[0] ^ (mask[0] & 0x0f);
    let pn_len = (first & 0x03) as usize + 1;
    let mut header_bytes = packet.get(..pn_offset + pn_len)?.to_vec();
    header_bytes[0] = first;
    let mut pn = 0u64;
    for i in 0..pn_len {
        header_bytes[pn_offset + i] ^= mask[1 + i];
        pn = (pn << 8) | header_bytes[pn_offset + i] as u64;
    }
    // The packet number as sent is the full one for a client's first packets (no packet was
    // acknowledged yet: RFC 9000 §A.3 decodes a small truncated number to itself).
    let mut nonce = keys.iv;
    for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
        *n ^= p;
    }
    let mut payload = packet.get(pn_offset + pn_len..)?.to_vec();
    let plain = keys
        .key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&header_bytes[..]),
            &mut payload,
        )
        .ok()?
        .len();
    payload.truncate(plain);
    Some(payload)
}

/// CRYPTO frame data by offset.
#[derive(Clone, Debug, Default)]
struct Crypto {
    fragments: Vec<(u64, Vec<u8>)>,
    /// Bytes held, at most `MAX_CRYPTO`.
    held: u64,
}

impl Crypto {
    /// Walks an Initial packet's frames (RFC 9000 §17.2.2: PADDING, PING, ACK, CRYPTO,
    /// CONNECTION_CLOSE); stops at anything else or a malformed frame.
    fn add_frames(&mut self, mut p: &[u8]) {
        while let Some((&kind, rest)) = p.split_first() {
            p = rest;
            let ok = match kind {
                0x00 | 0x01 => Some(()),
                0x02 | 0x03 => skip_ack(&mut p, kind == 0x03),
                0x06 => self.crypto_frame(&mut p),
                0x1c => skip_close(&mut p),
                _ => None,
            };
            if ok.is_none() {
                return;
            }
        }
    }

    fn crypto_frame(&mut self, p: &mut &[u8]) -> Option<()> {
        let offset = take_varint(p)?;
        let len = take_varint(p)?;
        let data = take(p, usize::try_from(len).ok()?)?;
        if offset.checked_add(len)? <= MAX_CRYPTO
            && !data.is_empty()
            && self.held + len <= MAX_CRYPTO
        {
            self.fragments.push((offset, data.to_vec()));
            self.held += len;
        }
        Some(())
    }

    /// The data contiguous from offset 0 (overlaps allowed; retransmissions carry the same
    /// bytes).
    fn contiguous(&self) -> Vec<u8> {
        let mut fragments: Vec<&(u64, Vec<u8>)> = self.fragments.iter().collect();
        fragments.sort_by_key(|(offset, _)| *offset);
        let mut out: Vec<u8> = Vec::new();
        for (offset, data) in fragments {
            let offset = *offset as usize;
            if offset > out.len() {
                break;
            }
            let already = out.len() - offset;
            if data.len() > already {
                out.extend_from_slice(&data[already..]);
            }
        }
        out
    }
}

fn skip_ack(p: &mut &[u8], ecn: bool) -> Option<()> {
    let _largest = take_varint(p)?;
    let _delay = take_varint(p)?;
    let ranges = take_varint(p)?;
    let _first = take_varint(p)?;
    // Each further range is two varints, at least two bytes.
    if ranges > p.len() as u64 / 2 {
        return None;
    }
    for _ in 0..ranges * 2 {
        take_varint(p)?;
    }
    if ecn {
        for _ in 0..3 {
            take_varint(p)?;
        }
    }
    Some(())
}

fn skip_close(p: &mut &[u8]) -> Option<()> {
    let _code = take_varint(p)?;
    let _frame = take_varint(p)?;
    let reason = take_varint(p)?;
    take(p, usize::try_from(reason).ok()?).map(|_| ())
}

fn take<'a>(p: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if len > p.len() {
        return None;
    }
    let (head, tail) = p.split_at(len);
    *p = tail;
    Some(head)
}

fn take_varint(p: &mut &[u8]) -> Option<u64> {
    let (value, n) = varint(p)?;
    *p = &p[n..];
    Some(value)
}

/// A variable-length integer (RFC 9000 §16) and its size.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let first = *bytes.first()?;
    let len = 1usize << (first >> 6);
    let raw = bytes.get(..len)?;
    let mut value = (first & 0x3f) as u64;
    for b in &raw[1..] {
        value = (value << 8) | *b as u64;
    }
    Some((value, len))
}

#[cfg(test)]
#[path = "quic_testing.rs"]
pub(crate) mod testing;

#[cfg(test)]
#[path = "quic_tests.rs"]
mod tests;
