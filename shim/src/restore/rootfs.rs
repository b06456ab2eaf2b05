//! A checkpoint's filesystem changes: checked here before anything is staged, applied by
//! the runc wrapper. One implementation, in `ckpt_shim_runc::rootfs`.

pub use ckpt_shim_runc::rootfs::*;
