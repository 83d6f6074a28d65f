//! The library's monitor over real loopback traffic: opening it in each mode, finding a
//! connection's row.

use std::net::TcpStream;

use flow_user::{
    observe::Mode, procfs::TcpInfoRow, ConnectionBandwidth, ModeChoice, Monitor, MonitorOptions,
};

use super::{gate::may_load, kernel::options, net::addrs};

/// Opens a monitor in `mode`, on the rung under test in eBPF mode ([`options`]: the VM matrix
/// forces each). eBPF mode needs root: without it the test says loudly that it did not run,
/// except under CI, where it fails.
pub fn open(mode: ModeChoice) -> Option<Monitor> {
    if mode == ModeChoice::Ebpf && !may_load() {
        return None;
    }
    let monitor = Monitor::open(&MonitorOptions {
        mode,
        load: options(),
        ..MonitorOptions::default()
    })
    .unwrap_or_else(|err| panic!("the monitor must open in {mode:?} mode here: {err:#}"));
    let expected = match mode {
        ModeChoice::Ebpf => Mode::Ebpf,
        _ => Mode::Procfs,
    };
    assert_eq!(monitor.mode(), expected, "{}", monitor.describe());
    eprintln!("{}", monitor.describe());
    Some(monitor)
}

/// The one row for this end of a connection (there must be exactly one).
pub fn row_of<'a>(
    rows: &'a [ConnectionBandwidth],
    stream: &TcpStream,
    what: &str,
) -> &'a ConnectionBandwidth {
    let (local, remote) = addrs(stream);
    let matching: Vec<_> = rows
        .iter()
        .filter(|b| b.connection.local == local && b.connection.remote == remote)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{what}: expected one row for {local} -> {remote}, got {matching:#?}"
    );
    matching[0]
}

/// The sock_diag row of this end of a connection.
pub fn tcp_info(stream: &TcpStream) -> TcpInfoRow {
    let (local, remote) = addrs(stream);
    flow_user::procfs::dump_tcp_info()
        .unwrap()
        .into_iter()
        .find(|r| r.local == local && r.remote == remote)
        .unwrap_or_else(|| panic!("sock_diag has no row for {local} -> {remote}"))
}
