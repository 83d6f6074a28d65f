//! The kernel program: loading it up the attach ladder, and reading what it counted.
mod attach;
mod batch;
mod events;
mod host;
mod kernel_btf;
mod load_errors;
mod loader;
mod quic_initials;
mod reader;
mod rungs;
mod sys;
mod udp;

pub use events::{KernelEvents, PayloadSeen};
pub use load_errors::Refusal;
pub use loader::{KernelProgram, LoadOptions};
pub use reader::{tuple_addrs, ChangedRead, KernelStats, TableRow};
pub use rungs::{Counting, Rung, Store};
pub use udp::{UdpCounting, UdpRead};
