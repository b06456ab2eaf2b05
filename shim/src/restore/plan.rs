//! The hand-over between the shim and the runc wrapper: the format is in
//! `ckpt_format::plan`, the removal of a staged checkpoint in `ckpt_shim_runc::staged`.
//! These re-exports keep `restore::plan::...` paths working until the callers switch.

pub use ckpt_format::plan::*;
pub use ckpt_shim_runc::staged::{remove_staged, unmount_under};
