//! Test builders for QUIC Initials: protecting a packet as a client would (the inverse of
//! `open_initial`), CRYPTO frames, and a ClientHello whose server name sits past 1.4 KiB of
//! other extensions. Shared by the parser's tests and those of the code that feeds it.

use ring::aead;

use super::{client_key_material, VERSION_1};

/// Builds a protected client Initial (the inverse of `open_initial`, for tests), padded to
/// `padded_len` bytes of payload.
pub(crate) fn protect(
    version: u32,
    dcid: &[u8],
    pn: u32,
    frames: &[u8],
    padded_len: usize,
) -> Vec<u8> {
    let (key, iv, hp) = client_key_material(version, dcid).unwrap();
    let mut payload = frames.to_vec();
    payload.resize(padded_len.max(frames.len()), 0);
    let initial_bits = if version == VERSION_1 { 0 } else { 1 };
    let mut header = vec![0xc3 | (initial_bits << 4)];
    header.extend_from_slice(&version.to_be_bytes());
    header.push(dcid.len() as u8);
    header.extend_from_slice(dcid);
    header.extend_from_slice(&[3, 0xaa, 0xbb, 0xcc]); // SCID
    header.push(0); // token length
    let length = (payload.len() + 4 + 16) as u16 | 0x4000;
    header.extend_from_slice(&length.to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let mut nonce = iv;
    for (n, p) in nonce[4..].iter_mut().zip((pn as u64).to_be_bytes()) {
        *n ^= p;
    }
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).unwrap());
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(&header[..]),
        &mut payload,
    )
    .unwrap();
    let hp = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).unwrap();
    let mask = hp.new_mask(&payload[..16]).unwrap();
    header[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        header[pn_offset + i] ^= mask[1 + i];
    }
    header.extend(payload);
    header
}

/// A CRYPTO frame carrying `data` at `offset` (4-byte offset, 2-byte length varints).
pub(crate) fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x06];
    out.extend_from_slice(&(0x8000_0000u32 | offset as u32).to_be_bytes());
    out.extend_from_slice(&(0x4000u16 | data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    out
}

/// A ClientHello handshake message with 1.4 KiB of extensions before the server name.
pub(crate) fn big_client_hello(name: &str) -> Vec<u8> {
    let mut exts = Vec::new();
    exts.extend_from_slice(&[0x00, 0x33, 0x05, 0x78]);
    exts.extend(vec![0x5a; 0x578]);
    let mut entry = vec![0u8];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name.as_bytes());
    exts.extend_from_slice(&[0, 0]);
    exts.extend_from_slice(&((entry.len() + 2) as u16).to_be_bytes());
    exts.extend_from_slice(&(entry.len() as u16).to_be_bytes());
    exts.extend(entry);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut message = vec![1];
    message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    message.extend(body);
    message
}
