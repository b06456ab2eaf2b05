//! ckpt-shim: a CRI proxy that sits between kubelet and the container runtime, relays every
//! call byte for byte, and owns the few methods around checkpoint and restore.
//!
//! A call's path through the crate: `server` accepts it (peer credentials, HTTP/2),
//! `proxy::router` picks relay or owner, `proxy` relays it through `proxy::upstream`, or an
//! `owned` module decodes it from the original bytes and decides. `grpc` holds the wire
//! details both sides share.
//!
//! CheckpointContainer goes on from `owned::checkpoint` to `checkpoint`, which passes it to
//! the runtime (`checkpoint::native`) or does it through containerd's API
//! (`checkpoint::engine`, talking through `runtime`), writes the archive
//! (`checkpoint::archive_writer`) and its sidecar, and records the attempt in `audit`.
//!
//! CreateContainer, StartContainer and RemoveContainer of a container whose image is a
//! checkpoint go from `owned` to `restore`, which checks and stages the checkpoint and has
//! the runtime restore it, natively or through the runc wrapper (the `ckpt-shim-runc`
//! crate and program, which links only the format crate, not this one).
//!
//! The on-disk formats (archive member names, `config.dump`, `spec.dump`, the sidecar, the
//! restore hand-over) are the `ckpt-shim-format` crate's (`ckpt_format`), shared with the
//! wrapper.
//!
//! The forensic commands stand apart from the proxy: `inspect` (the commands) reads
//! checkpoint archives through `archive` (tar, compression, member selection) and `criu`
//! (CRIU image files).

// No unsafe code but three libc calls nix does not offer safely (sync_file_range,
// lgetxattr, signal), each allowed where it stands; every other module forbids it.
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod api;
#[forbid(unsafe_code)]
pub mod archive;
#[forbid(unsafe_code)]
pub mod audit;
pub mod checkpoint;
#[forbid(unsafe_code)]
pub mod cli;
#[forbid(unsafe_code)]
pub mod config;
#[forbid(unsafe_code)]
pub mod criu;
#[forbid(unsafe_code)]
pub mod grpc;
#[forbid(unsafe_code)]
pub mod image;
pub mod inspect;
#[forbid(unsafe_code)]
pub mod logging;
#[forbid(unsafe_code)]
pub mod owned;
#[forbid(unsafe_code)]
pub mod proxy;
#[forbid(unsafe_code)]
pub mod restore;
#[forbid(unsafe_code)]
pub mod runtime;
#[forbid(unsafe_code)]
pub mod server;
#[forbid(unsafe_code)]
pub mod systemd;
#[forbid(unsafe_code)]
pub mod timefmt;
