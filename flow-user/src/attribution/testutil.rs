//! Fixture values for the attribution tests.

pub use crate::testutil::TempDir;

pub const ID_A: &str = "4f9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";
pub const ID_B: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const POD_UID: &str = "8d2c6a1e-3f4b-4c5d-9e6f-7a8b9c0d1e2f";
