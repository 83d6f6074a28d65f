//! Shared by every integration test: privilege gates, loopback traffic, bounded waits, the
//! `flow` binary (also without privileges), loading the kernel program and opening a monitor.
//! Every loop here ends by a deadline; all traffic stays on 127.0.0.1.
//!
//! Each test binary uses only part of this module, hence `dead_code` allowed below.
#![allow(dead_code, unused_imports)]

mod dns;
mod gate;
mod kernel;
mod monitor;
mod net;
mod process;
mod quic;
mod tls;
mod wait;

pub use dns::Dnsmasq;
pub use gate::{in_ci, is_root, may_load, privileged, tool};
pub use kernel::{collect_closed, counters_of, load, options, tuple_addrs};
pub use monitor::{open, row_of, tcp_info};
pub use net::{
    addrs, close_with_reset, connect_from, drain, free_port, fstat_inode, peek, transfer, Paced,
    PacedReport, Pair, Transfer,
};
pub use process::{
    flow, flow_without_privileges, has_nonzero_rate, own_comm, Running, Unprivileged,
};
pub use quic::{ensure_aioquic, python, HelloShape, QuicClient, CHROME_SHAPE, QUIC_V1, QUIC_V2};
pub use tls::TlsServer;
pub use wait::{retry, wait_for};
