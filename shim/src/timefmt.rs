//! RFC 3339 timestamps: moved to the format crate (the runc wrapper writes them too).

pub use ckpt_format::time::*;
