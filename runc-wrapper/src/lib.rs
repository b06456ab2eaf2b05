//! `ckpt-shim-runc`, the runc wrapper, as a library: what the program does (`wrapper`), the
//! checks and writes of a checkpoint's filesystem changes (`rootfs`, also the shim's check
//! before it stages anything), the removal of a staged checkpoint (`staged`), and finding and
//! killing a process tree (`process`, also the shim's abort of a checkpoint).
//!
//! It links no gRPC and no async runtime: containerd runs the wrapper on every runc call of
//! every container on the node, so it must start as fast as runc itself.

#![forbid(unsafe_code)]

pub mod process;
pub mod rootfs;
pub mod staged;
pub mod wrapper;
