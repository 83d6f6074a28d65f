//! DNS messages (RFC 1035): is a payload prefix a DNS message, and which addresses did a response
//! give for the name that was asked. Only the queried name, the addresses and the TTLs leave this
//! module; no other record content is kept.
//!
//! Hand-written rather than `hickory-proto` or `simple-dns`, both of which were weighed:
//! `hickory-proto` (0.26) brings `rand`, `url`/`idna`, `tracing`, `ipnet` and more for a few
//! hundred lines of work here, and both crates parse whole messages only — a message cut short
//! is an error. `flow` sees a bounded prefix of each message (`--payload-bytes`), so it wants
//! the answers that fit in the prefix and a header/question check that tolerates a cut; a
//! bounded walk over the wire format does exactly that, allocates only the names it returns and
//! never panics (a property test feeds it arbitrary bytes).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// One address a response gave: the address, the name that was asked (CNAMEs followed back to
/// it; lowercase, without the root dot) and the smallest TTL along the chain, in seconds.
pub type DnsAnswer = (IpAddr, String, u32);

const HEADER_LEN: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// The longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Records walked at most (the counts are checked against this too).
const MAX_RECORDS: usize = 512;
/// CNAME hops followed at most.
const MAX_CHAIN: usize = 16;

/// Why a walk stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The bytes ran out: a prefix, cut anywhere.
    Truncated,
    /// The bytes cannot be DNS.
    Invalid,
}

type Walk<T> = Result<T, Stop>;

/// A DNS message's fixed header.
#[derive(Clone, Copy, Debug)]
struct Header {
    response: bool,
    opcode: u8,
    rcode: u8,
    questions: u16,
    answers: u16,
    authority: u16,
    additional: u16,
}

impl Header {
    fn parse(msg: &[u8]) -> Option<Header> {
        let h = msg.get(..HEADER_LEN)?;
        let count = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Header {
            response: h[2] & 0x80 != 0,
            opcode: (h[2] >> 3) & 0x0f,
            rcode: h[3] & 0x0f,
            questions: count(4),
            answers: count(6),
            authority: count(8),
            additional: count(10),
        })
    }

    fn records(&self) -> usize {
        self.answers as usize + self.authority as usize + self.additional as usize
    }

    /// Header sanity: a query, status, notify or update; the Z bit clear (checked by the
    /// caller, which has the byte); one to four questions; record counts a message can hold; a
    /// plain query asks and carries at most the EDNS record.
    fn plausible(&self, z_bit: bool) -> bool {
        if z_bit || !matches!(self.opcode, 0 | 2 | 4 | 5) || !(1..=4).contains(&self.questions) {
            return false;
        }
        if self.records() > MAX_RECORDS || self.rcode > 10 {
            return false;
        }
        if !self.response && self.opcode == 0 {
            return self.answers == 0 && self.authority == 0 && self.additional <= 2;
        }
        true
    }

    /// The fewest bytes a message with these counts takes (root names everywhere).
    fn min_len(&self) -> usize {
        HEADER_LEN + self.questions as usize * 5 + self.records() * 11
    }
}

/// Is this (a prefix of) a DNS message, as a UDP datagram carries it? The header is sane, the
/// question parses (or is cut by the end of the prefix), and whatever records fit in the prefix
/// are well formed.
pub fn looks_like_dns(msg: &[u8]) -> bool {
    plausible_message(msg, None)
}

/// Is this (a prefix of) a DNS message behind TCP's two-byte length (RFC 1035 §4.2.2)? As
/// [`looks_like_dns`], and the length holds the records the header counts.
pub fn looks_like_dns_over_tcp(bytes: &[u8]) -> bool {
    match tcp_message(bytes) {
        Some((length, msg)) => plausible_message(msg, Some(length)),
        None => false,
    }
}

/// The A/AAAA answers of a DNS response (a UDP payload, or a prefix of one), each mapped to the
/// name the question asked: `www.example.com CNAME x.cdn.net; x.cdn.net A 1.2.3.4` gives
/// `(1.2.3.4, "www.example.com", min TTL)`. Addresses whose owner the question's CNAME chain
/// does not reach are left out. Empty for queries, errors and anything that is not DNS.
pub fn answers(msg: &[u8]) -> Vec<DnsAnswer> {
    answers_in(msg).unwrap_or_default()
}

/// [`answers`] for a DNS message behind TCP's two-byte length.
pub fn answers_over_tcp(bytes: &[u8]) -> Vec<DnsAnswer> {
    tcp_message(bytes)
        .map(|(_, msg)| answers(msg))
        .unwrap_or_default()
}

/// Splits TCP's length prefix off: the announced length and the message bytes present (at most
/// that many).
fn tcp_message(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let length = u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
    let rest = &bytes[2..];
    Some((length, &rest[..rest.len().min(length)]))
}

fn plausible_message(msg: &[u8], length: Option<usize>) -> bool {
    let Some(header) = Header::parse(msg) else {
        return false;
    };
    if !header.plausible(msg[3] & 0x40 != 0) {
        return false;
    }
    if length.is_some_and(|l| l < header.min_len()) {
        return false;
    }
    // The first question must be whole (a prefix of a few hundred bytes holds it); after it, a
    // prefix may end anywhere, but what it holds must be well formed.
    let mut pos = HEADER_LEN;
    let mut first_question_whole = false;
    let walked = (|| -> Walk<()> {
        for _ in 0..header.questions {
            pos = skip_name(msg, pos)?;
            let fixed = take(msg, pos, 4)?;
            if u16::from_be_bytes([fixed[0], fixed[1]]) == 0 {
                return Err(Stop::Invalid);
            }
            pos += 4;
            first_question_whole = true;
        }
        for _ in 0..header.records() {
            pos = Record::parse(msg, pos)?.end;
        }
        Ok(())
    })();
    first_question_whole && walked != Err(Stop::Invalid)
}

fn answers_in(msg: &[u8]) -> Walk<Vec<DnsAnswer>> {
    let header = Header::parse(msg).ok_or(Stop::Truncated)?;
    if !header.response
        || header.opcode != 0
        || header.rcode != 0
        || !header.plausible(msg[3] & 0x40 != 0)
    {
        return Ok(Vec::new());
    }
    let (qname, mut pos) = read_name(msg, HEADER_LEN)?;
    take(msg, pos, 4)?;
    pos += 4;
    for _ in 1..header.questions {
        pos = skip_name(msg, pos)?;
        take(msg, pos, 4)?;
        pos += 4;
    }
    // owner → (target, ttl) for CNAMEs; (owner, address, ttl) for addresses. A prefix cut in the
    // middle of the answer section keeps the records before the cut.
    let mut cnames: HashMap<String, (String, u32)> = HashMap::new();
    let mut addresses: Vec<(String, IpAddr, u32)> = Vec::new();
    for _ in 0..header.answers {
        let record = match Record::parse(msg, pos) {
            Ok(record) => record,
            Err(Stop::Truncated) => break,
            Err(Stop::Invalid) => return Err(Stop::Invalid),
        };
        pos = record.end;
        if record.class != CLASS_IN {
            continue;
        }
        let rdata = &msg[record.rdata..record.end];
        match record.rtype {
            TYPE_A | TYPE_AAAA => {
                let ip = match (record.rtype, rdata.len()) {
                    (TYPE_A, 4) => {
                        IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))
                    }
                    (TYPE_AAAA, 16) => {
                        let octets: [u8; 16] = rdata.try_into().map_err(|_| Stop::Invalid)?;
                        IpAddr::V6(Ipv6Addr::from(octets))
                    }
                    _ => return Err(Stop::Invalid),
                };
                let (owner, _) = read_name(msg, record.owner)?;
                addresses.push((owner, ip, record.ttl));
            }
            TYPE_CNAME => {
                let (owner, _) = read_name(msg, record.owner)?;
                let (target, _) = read_name(msg, record.rdata)?;
                cnames.entry(owner).or_insert((target, record.ttl));
            }
            _ => {}
        }
    }
    // The names the question's chain reaches, each with the smallest TTL on the way.
    let mut reached: Vec<(String, u32)> = vec![(qname.clone(), u32::MAX)];
    while reached.len() <= MAX_CHAIN {
        let (last, ttl) = &reached[reached.len() - 1];
        match cnames.get(last) {
            Some((target, t)) if !reached.iter().any(|(n, _)| n == target) => {
                let next = (target.clone(), (*ttl).min(*t));
                reached.push(next);
            }
            _ => break,
        }
    }
    Ok(addresses
        .into_iter()
        .filter_map(|(owner, ip, ttl)| {
            let (_, chain_ttl) = reached.iter().find(|(n, _)| *n == owner)?;
            Some((ip, qname.clone(), ttl.min(*chain_ttl)))
        })
        .collect())
}

/// A resource record's position and fixed fields.
struct Record {
    owner: usize,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: usize,
    end: usize,
}

impl Record {
    fn parse(msg: &[u8], owner: usize) -> Walk<Record> {
        let pos = skip_name(msg, owner)?;
        let fixed = take(msg, pos, 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlength = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        if rtype == 0 || (class == 0 && rtype != TYPE_OPT) {
            return Err(Stop::Invalid);
        }
        let rdata = pos + 10;
        take(msg, rdata, rdlength)?;
        Ok(Record {
            owner,
            rtype,
            class,
            ttl,
            rdata,
            end: rdata + rdlength,
        })
    }
}

fn take(msg: &[u8], pos: usize, len: usize) -> Walk<&[u8]> {
    msg.get(pos..pos.checked_add(len).ok_or(Stop::Invalid)?)
        .ok_or(Stop::Truncated)
}

/// Where the name at `pos` ends in the message (after its first compression pointer, if any).
/// Validates the whole name, pointers included.
fn skip_name(msg: &[u8], pos: usize) -> Walk<usize> {
    walk_name(msg, pos, |_| ())
}

/// The name at `pos` (lowercase, labels joined with dots, `.` for the root) and where it ends.
fn read_name(msg: &[u8], pos: usize) -> Walk<(String, usize)> {
    let mut name = String::new();
    let end = walk_name(msg, pos, |label| {
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
    })?;
    if name.is_empty() {
        name.push('.');
    }
    Ok((name, end))
}

/// Walks a (possibly compressed) name, handing each label to `label`. A compression pointer
/// must point strictly before the label sequence that holds it, so every walk ends: no loops.
/// Labels are printable ASCII without dots or spaces, the name at most 255 bytes.
fn walk_name(msg: &[u8], start: usize, mut label: impl FnMut(&[u8])) -> Walk<usize> {
    let mut pos = start;
    // Where the current run of labels began: a pointer must go below it.
    let mut floor = start;
    let mut end = None;
    let mut length = 0usize;
    loop {
        let len = *take(msg, pos, 1)?.first().ok_or(Stop::Truncated)? as usize;
        match len {
            0 => return Ok(end.unwrap_or(pos + 1)),
            1..=63 => {
                let bytes = take(msg, pos + 1, len)?;
                length += len + 1;
                if length > MAX_NAME || !bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
                    return Err(Stop::Invalid);
                }
                label(bytes);
                pos += 1 + len;
            }
            0xc0..=0xff => {
                let low = *take(msg, pos + 1, 1)?.first().ok_or(Stop::Truncated)? as usize;
                let target = ((len & 0x3f) << 8) | low;
                if target >= floor {
                    return Err(Stop::Invalid);
                }
                end.get_or_insert(pos + 2);
                pos = target;
                floor = target;
            }
            // 0x40 and 0x80: extended and reserved label types (RFC 6891 §5).
            _ => return Err(Stop::Invalid),
        }
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
