//! `flow`: kernel-assisted per-connection TCP bandwidth monitor.
//!
//! Data flows one way: the kernel program ([`ebpf`]) or procfs/sock_diag ([`procfs`]) are read
//! by an [`observe::Observer`] into plain observations; the [`tracker::Tracker`] turns those into
//! bandwidth, snapshots and history; the [`monitor::Monitor`] puts the documented API on top.
//!
//! ```no_run
//! use std::time::Duration;
//! use flow_user::{Monitor, MonitorOptions};
//!
//! # fn main() -> anyhow::Result<()> {
//! // eBPF when the kernel program loads (root or CAP_BPF+CAP_PERFMON), procfs otherwise.
//! let mut monitor = Monitor::open(&MonitorOptions::default())?;
//! eprintln!("{}", monitor.describe());
//! for bandwidth in monitor.connection_bandwidth(Duration::from_secs(1))? {
//!     println!(
//!         "{} -> {}: {} B/s ({} B sent, {} B received)",
//!         bandwidth.connection.local,
//!         bandwidth.connection.remote,
//!         bandwidth.bytes_per_second,
//!         bandwidth.tx_bytes,
//!         bandwidth.rx_bytes,
//!     );
//! }
//! for http in monitor.http_connections(Duration::ZERO).unwrap_or_default() {
//!     println!("{:?} {:?} {:?}", http.host, http.method, http.status_code);
//! }
//! # Ok(())
//! # }
//! ```
pub mod attribution;
pub mod ebpf;
pub mod id;
pub mod memory;
pub mod model;
pub mod monitor;
pub mod names;
pub mod netns;
pub mod observe;
pub mod procfs;
pub mod protocol;
pub mod record;
#[cfg(test)]
mod testutil;
pub mod tracker;

pub use id::generate_connection_id;
pub use model::*;
pub use monitor::{ModeChoice, Monitor, MonitorOptions};
pub use protocol::detect_protocol;
pub mod cli;
