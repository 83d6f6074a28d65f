//! The server names of QUIC flows, from the Initial datagrams the kernel copies whole
//! ([`UdpInitialEvent`]: a flow's first two in each direction that are Initials). A ClientHello
//! with post-quantum key shares spans two Initials, and its server_name may sit in the second,
//! so the first one's opened CRYPTO data waits here for the next. Bounded: a flow's entry ends
//! with its name, with the direction's last Initial, or after [`MAX_AGE_READS`] reads, and at
//! most [`MAX_PENDING`] wait. Nothing but the name leaves.

use std::collections::HashMap;

use flow_common::udp::{UdpFlowKey, UdpInitialEvent, UDP_INITIALS_PER_DIRECTION};

use super::events::valid;
use crate::{
    model::Protocol,
    protocol::{
        payload::PayloadFacts,
        quic::{is_quic_long_header, InitialCrypto},
    },
};

/// Flows (per direction) whose ClientHello may still be completed by their next Initial.
const MAX_PENDING: usize = 1_024;
/// Reads an entry waits for its next Initial (the client sends both at once).
const MAX_AGE_READS: u64 = 4;

#[derive(Default)]
pub struct PendingInitials {
    pending: HashMap<(UdpFlowKey, u32), Pending>,
    /// Reads so far: the clock entries age by.
    reads: u64,
}

struct Pending {
    crypto: InitialCrypto,
    since: u64,
}

impl PendingInitials {
    /// What one copied Initial datagram says of its flow: QUIC, and the server name as soon as
    /// the ClientHello's data gathered so far holds it.
    pub fn add(&mut self, event: &UdpInitialEvent) -> PayloadFacts {
        let datagram = valid(&event.data, event.len);
        let slot = (event.key, event.direction);
        let earlier = self.pending.remove(&slot);
        let had_earlier = earlier.is_some();
        let mut crypto = earlier.map(|p| p.crypto).unwrap_or_default();
        // A server's Initial (sealed with the server's keys) opens to nothing: no entry for it.
        let opened = crypto.add_datagram(datagram);
        let name = crypto.sni();
        let last = event.index + 1 >= UDP_INITIALS_PER_DIRECTION;
        if name.is_none() && !last && (opened || had_earlier) && self.pending.len() < MAX_PENDING {
            let since = self.reads;
            self.pending.insert(slot, Pending { crypto, since });
        }
        PayloadFacts {
            protocol: is_quic_long_header(datagram).then_some(Protocol::Quic),
            tls_server_name: name,
            ..PayloadFacts::default()
        }
    }

    /// Called once per read: forgets entries whose next Initial did not come.
    pub fn tick(&mut self) {
        self.reads += 1;
        let reads = self.reads;
        self.pending
            .retain(|_, p| reads.saturating_sub(p.since) <= MAX_AGE_READS);
    }

    /// Entries waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
#[path = "quic_initials_tests.rs"]
mod tests;
