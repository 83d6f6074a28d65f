//! The kernel program: loading it up the attach ladder, and reading what it counted.
mod batch;
mod events;
mod kernel_btf;
mod loader;
mod reader;

pub use events::{KernelEvents, PayloadSeen};
pub use loader::{KernelProgram, LoadOptions, Refusal, Rung, Store};
pub use reader::{tuple_addrs, KernelStats, TableRow};
