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

pub mod api;
pub mod archive;
pub mod audit;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod criu;
pub mod grpc;
pub mod image;
pub mod inspect;
pub mod logging;
pub mod owned;
pub mod proxy;
pub mod restore;
pub mod runtime;
pub mod server;
pub mod systemd;
pub mod timefmt;
