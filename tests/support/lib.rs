//! Shared test support: the fake runtime, a byte-level gRPC client, the shim as a child
//! process, the real-runtime test bed and a kubelet-like CRI driver.

pub mod fake_runtime;
pub mod kubelet;
pub mod raw;
pub mod shim;
pub mod testbed;
