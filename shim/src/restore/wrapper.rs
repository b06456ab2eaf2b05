//! The runc wrapper (`ckpt-shim-runc`) lives in its own crate, `ckpt_shim_runc::wrapper`, so
//! that the program containerd runs on every runc call links only what it uses.

pub use ckpt_shim_runc::wrapper::*;
