//! Loading the kernel program for a test, and reading what it recorded.

use std::{
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use flow_user::ebpf::{KernelEvents, KernelProgram, LoadOptions};

use super::gate::may_load;

/// Loads the kernel program. Without root it cannot: under CI that is a failure, elsewhere the
/// test says loudly that it did not run.
pub fn load(options: &LoadOptions) -> Option<KernelProgram> {
    if !may_load() {
        return None;
    }
    match KernelProgram::load(options) {
        Ok(program) => Some(program),
        Err(err) => panic!("the kernel program must load here: {err:#}"),
    }
}

/// Load options for the rung under test: `FLOW_TEST_RUNG` forces one (the VM matrix runs every
/// test once per rung); unset, the ladder picks.
pub fn options() -> LoadOptions {
    LoadOptions {
        rung: std::env::var("FLOW_TEST_RUNG").ok().map(|r| {
            r.parse()
                .expect("FLOW_TEST_RUNG: fentry, kprobe or tracepoint")
        }),
        ..LoadOptions::default()
    }
}

/// Collects close events until `done` says enough, or `limit` passes.
pub fn collect_closed(
    events: &KernelEvents,
    limit: Duration,
    mut done: impl FnMut(&[flow_common::SockClosed]) -> bool,
) -> Vec<flow_common::SockClosed> {
    let start = Instant::now();
    let mut all = Vec::new();
    loop {
        all.extend(events.take_closed());
        if done(&all) || start.elapsed() > limit {
            return all;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The kernel's counters of the socket with these `(local, remote)` addresses, from one map read.
pub fn counters_of(
    sockets: &[(flow_common::SockKey, flow_common::SockCounters)],
    addrs: (SocketAddr, SocketAddr),
) -> flow_common::SockCounters {
    sockets
        .iter()
        .find(|(_, c)| tuple_addrs(&c.tuple) == Some(addrs))
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("no kernel entry for {addrs:?}"))
}

/// The tuple the kernel recorded, as socket addresses.
pub fn tuple_addrs(tuple: &flow_common::SockTuple) -> Option<(SocketAddr, SocketAddr)> {
    flow_user::ebpf::tuple_addrs(tuple)
}
