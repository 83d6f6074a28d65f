//! The kernel program: loading it up the attach ladder, and reading what it counted.
mod closed;
mod loader;
mod reader;

pub use closed::ClosedEvents;
pub use loader::{KernelProgram, LoadOptions, Refusal, Rung};
pub use reader::{tuple_addrs, KernelStats};
