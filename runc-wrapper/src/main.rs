//! The runc wrapper containerd's runc shim runs as `BinaryName` so that restores work on
//! runtimes without one (see `ckpt_shim_runc::wrapper`). Kept a separate, small program:
//! it runs on every runc call of every container on the node.

#![forbid(unsafe_code)]

fn main() {
    std::process::exit(ckpt_shim_runc::wrapper::run(
        std::env::args_os().skip(1).collect(),
    ));
}
