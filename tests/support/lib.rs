//! Shared test support: the fake runtime, a byte-level gRPC client, the shim as a child
//! process, the real-runtime test bed, a kubelet-like CRI driver and the checkpoint/restore
//! tests' helpers around the test bed (`bed`).

pub mod bed;
pub mod fake_runtime;
pub mod kubelet;
pub mod raw;
pub mod shim;
pub mod testbed;
