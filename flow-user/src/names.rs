//! Who is at the other end: the name this host most recently resolved to an address, learned
//! from the A/AAAA answers of the DNS responses `flow` saw ([`crate::protocol::dns::answers`]).
//!
//! The cache is bounded: at most `max_entries` addresses, the one learned longest ago evicted
//! first (each eviction counted), and each entry expires after its DNS TTL clamped to
//! `[min_ttl, max_ttl]` — a 0-second TTL still names a connection opened right after the
//! lookup, and a week-long one does not pin a stale name.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::protocol::dns::DnsAnswer;

/// Limits of a [`NameCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameCacheLimits {
    pub max_entries: usize,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for NameCacheLimits {
    fn default() -> Self {
        NameCacheLimits {
            max_entries: 65_536,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    name: Arc<str>,
    expires: Instant,
    /// Position in `order`: when this address was last learned.
    seq: u64,
}

/// Address → the name most recently resolved to it.
#[derive(Debug)]
pub struct NameCache {
    limits: NameCacheLimits,
    entries: HashMap<IpAddr, Entry>,
    /// Learn order, oldest first: the eviction queue.
    order: BTreeMap<u64, IpAddr>,
    next_seq: u64,
    evictions: u64,
}

impl Default for NameCache {
    fn default() -> Self {
        NameCache::new(NameCacheLimits::default())
    }
}

impl NameCache {
    /// A cache with these limits (`max_entries` at least 1; `max_ttl` at least `min_ttl`).
    pub fn new(limits: NameCacheLimits) -> NameCache {
        let limits = NameCacheLimits {
            max_entries: limits.max_entries.max(1),
            min_ttl: limits.min_ttl,
            max_ttl: limits.max_ttl.max(limits.min_ttl),
        };
        NameCache {
            limits,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            evictions: 0,
        }
    }

    pub fn limits(&self) -> NameCacheLimits {
        self.limits
    }

    /// Learns what one DNS response said, at `now`: each address now names its answer's name
    /// (replacing an older name: the latest resolution wins), for the clamped TTL.
    pub fn learn(&mut self, answers: &[DnsAnswer], now: Instant) {
        // One shared string per name in this response (a name often has several addresses).
        let mut names: Vec<Arc<str>> = Vec::new();
        for (ip, name, ttl) in answers {
            let name = match names.iter().find(|n| ***n == **name) {
                Some(shared) => shared.clone(),
                None => {
                    let shared: Arc<str> = Arc::from(name.as_str());
                    names.push(shared.clone());
                    shared
                }
            };
            let ttl = Duration::from_secs(u64::from(*ttl))
                .clamp(self.limits.min_ttl, self.limits.max_ttl);
            self.insert(canonical(*ip), name, now + ttl);
        }
    }

    fn insert(&mut self, ip: IpAddr, name: Arc<str>, expires: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(old) = self.entries.insert(ip, Entry { name, expires, seq }) {
            self.order.remove(&old.seq);
        }
        self.order.insert(seq, ip);
        while self.entries.len() > self.limits.max_entries {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            self.evictions += 1;
        }
    }

    /// The name last resolved to `ip`, unless it has expired by `now`.
    pub fn name_of(&self, ip: IpAddr, now: Instant) -> Option<Arc<str>> {
        let ip = canonical(ip);
        self.entries
            .get(&ip)
            .filter(|e| now < e.expires)
            .map(|e| e.name.clone())
    }

    /// Drops the entries expired by `now` (expired entries are never returned; this only frees
    /// their room). Returns how many went.
    pub fn purge(&mut self, now: Instant) -> usize {
        let before = self.entries.len();
        let order = &mut self.order;
        self.entries.retain(|_, e| {
            let keep = now < e.expires;
            if !keep {
                order.remove(&e.seq);
            }
            keep
        });
        before - self.entries.len()
    }

    /// Addresses held (expired ones included until [`NameCache::purge`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries pushed out to keep the cache within `max_entries`, since it was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

/// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) is the IPv4
/// address an A record gave.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ip: &str, name: &str, ttl: u32) -> DnsAnswer {
        (ip.parse().unwrap(), name.into(), ttl)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn learns_and_forgets_after_the_clamped_ttl() {
        let t0 = Instant::now();
        let mut cache = NameCache::default();
        cache.learn(
            &[
                answer("192.0.2.1", "www.example.test", 0),
                answer("192.0.2.2", "www.example.test", 300),
                answer("2001:db8::1", "v6.example.test", 86_400 * 7),
            ],
            t0,
        );
        assert_eq!(cache.len(), 3);
        let name = cache.name_of(ip("192.0.2.1"), t0).unwrap();
        assert_eq!(&*name, "www.example.test");
        // The two addresses of one name share one string.
        assert!(Arc::ptr_eq(
            &name,
            &cache.name_of(ip("192.0.2.2"), t0).unwrap()
        ));
        // TTL 0 lives the 30 s minimum.
        assert!(cache
            .name_of(ip("192.0.2.1"), t0 + Duration::from_secs(29))
            .is_some());
        assert!(cache
            .name_of(ip("192.0.2.1"), t0 + Duration::from_secs(30))
            .is_none());
        assert!(cache
            .name_of(ip("192.0.2.2"), t0 + Duration::from_secs(299))
            .is_some());
        // A week-long TTL is cut to an hour.
        let v6 = ip("2001:db8::1");
        assert!(cache.name_of(v6, t0 + Duration::from_secs(3599)).is_some());
        assert!(cache.name_of(v6, t0 + Duration::from_secs(3600)).is_none());
        assert_eq!(cache.purge(t0 + Duration::from_secs(301)), 2);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.name_of(ip("192.0.2.9"), t0), None);
    }

    #[test]
    fn the_latest_resolution_wins() {
        let t0 = Instant::now();
        let mut cache = NameCache::default();
        cache.learn(&[answer("192.0.2.1", "old.test", 3600)], t0);
        cache.learn(&[answer("192.0.2.1", "new.test", 60)], t0);
        assert_eq!(
            cache.name_of(ip("192.0.2.1"), t0).as_deref(),
            Some("new.test")
        );
        assert_eq!(cache.len(), 1);
        // The new TTL applies, not the old one.
        assert!(cache
            .name_of(ip("192.0.2.1"), t0 + Duration::from_secs(61))
            .is_none());
    }

    #[test]
    fn bounded_oldest_first_with_evictions_counted() {
        let t0 = Instant::now();
        let mut cache = NameCache::new(NameCacheLimits {
            max_entries: 3,
            ..NameCacheLimits::default()
        });
        for i in 1..=3 {
            cache.learn(
                &[answer(&format!("10.0.0.{i}"), &format!("n{i}.test"), 600)],
                t0,
            );
        }
        // Re-learning 10.0.0.1 makes it the newest: 10.0.0.2 goes first.
        cache.learn(&[answer("10.0.0.1", "n1.test", 600)], t0);
        cache.learn(&[answer("10.0.0.4", "n4.test", 600)], t0);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.evictions(), 1);
        assert_eq!(cache.name_of(ip("10.0.0.2"), t0), None);
        assert!(cache.name_of(ip("10.0.0.1"), t0).is_some());
        cache.learn(
            &(5..=104)
                .map(|i| answer(&format!("10.0.1.{}", i % 256), "bulk.test", 600))
                .collect::<Vec<_>>(),
            t0,
        );
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.evictions(), 101);
        assert_eq!(cache.order.len(), cache.entries.len());
    }

    #[test]
    fn mapped_ipv6_finds_the_ipv4_answer() {
        let t0 = Instant::now();
        let mut cache = NameCache::default();
        cache.learn(&[answer("192.0.2.7", "dual.test", 60)], t0);
        assert_eq!(
            cache.name_of(ip("::ffff:192.0.2.7"), t0).as_deref(),
            Some("dual.test")
        );
    }

    #[test]
    fn limits_are_made_sane() {
        let cache = NameCache::new(NameCacheLimits {
            max_entries: 0,
            min_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(10),
        });
        assert_eq!(cache.limits().max_entries, 1);
        assert_eq!(cache.limits().max_ttl, Duration::from_secs(60));
    }

    #[test]
    fn learns_from_a_parsed_response() {
        // A response for a.test: CNAME b.test, b.test A 198.51.100.5.
        let msg: &[u8] = b"\x12\x34\x81\x80\x00\x01\x00\x02\x00\x00\x00\x00\
            \x01a\x04test\x00\x00\x01\x00\x01\
            \xc0\x0c\x00\x05\x00\x01\x00\x00\x00\x78\x00\x04\x01b\xc0\x0e\
            \xc0\x24\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04\xc6\x33\x64\x05";
        let answers = crate::protocol::dns::answers(msg);
        assert_eq!(answers.len(), 1, "{answers:?}");
        let t0 = Instant::now();
        let mut cache = NameCache::default();
        cache.learn(&answers, t0);
        assert_eq!(
            cache.name_of(ip("198.51.100.5"), t0).as_deref(),
            Some("a.test")
        );
        // The CNAME's 120 s bound the mapping, not the A record's hour.
        assert!(cache
            .name_of(ip("198.51.100.5"), t0 + Duration::from_secs(121))
            .is_none());
    }
}
