//! `flow`: kernel-assisted per-connection TCP bandwidth monitor.
pub mod model;
pub mod procfs;

pub use model::*;
pub mod ebpf;
