//! `flow`: kernel-assisted per-connection TCP bandwidth monitor.
//!
//! Data flows one way: the kernel program ([`ebpf`]) or procfs/sock_diag ([`procfs`]) are read
//! by an [`observe::Observer`] into plain observations; the [`tracker::Tracker`] turns those into
//! bandwidth, snapshots and history; the [`monitor::Monitor`] puts the documented API on top.
pub mod ebpf;
pub mod id;
pub mod model;
pub mod monitor;
pub mod observe;
pub mod procfs;
pub mod protocol;
pub mod tracker;

pub use id::generate_connection_id;
pub use model::*;
pub use monitor::{ModeChoice, Monitor, MonitorOptions};
pub use protocol::detect_protocol;
pub mod cli;
