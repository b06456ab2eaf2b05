//! Shared test support: the fake runtime, a byte-level gRPC client, and the shim as a
//! child process.

pub mod fake_runtime;
pub mod raw;
pub mod shim;
