//! ckpt-shim: a CRI proxy that sits between kubelet and the container runtime, relays every
//! call byte for byte, and owns the few methods around checkpoint and restore.
//!
//! # Layout
//!
//! A call's path, one module per step (docs/architecture.md draws it):
//!
//! - `server`: accepts connections on the shim's socket, reads the caller's credentials
//!   (`caller`), serves HTTP/2, stops gracefully. `app` is the composition root: it builds
//!   every part below once from the configuration and hands each only what it needs.
//! - `router`: picks, by method, relay or intercept.
//! - `relay`: sends a call to the runtime and its answer back as the original bytes.
//! - `intercept`: one module per intercepted method (CheckpointContainer, CreateContainer,
//!   StartContainer, RemoveContainer): decode the original bytes, decide, forward or answer.
//! - `checkpoint`: CheckpointContainer done by the shim: checks, the runtime's own
//!   checkpoint passed through (`native`) or the shim's through containerd's API
//!   (`emulated`), the archive (`archive_writer`), its sidecar, the audit record.
//! - `restore`: detection of checkpoints in CreateContainer, the checks a checkpoint must
//!   pass (`policy`, `stage`), the hand-over to the runc wrapper (`plan`), tracking through
//!   StartContainer and RemoveContainer.
//! - `runtime`: every connection to the runtime (the relay's, the shim's own, CRI and
//!   containerd clients).
//! - `audit`: the hash-chained audit log. `grpc`: framing, the relayed body, statuses.
//!
//! The on-disk formats (archive member names, `config.dump`, `spec.dump`, the sidecar, the
//! restore hand-over) are the `ckpt-shim-format` crate's (`ckpt_format`), shared with the
//! runc wrapper (the `ckpt-shim-runc` crate and program, which links only that crate).
//!
//! Beside the proxy, reading checkpoints: `archive` (tar, compression, member selection),
//! `criu` (CRIU image files), `inspect` (the forensic commands), `image` (checkpoint images).
//! None of these speaks gRPC.

// No unsafe code but three libc calls nix does not offer safely (sync_file_range,
// lgetxattr, signal), each allowed where it stands; every other module forbids it.
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod api;
#[forbid(unsafe_code)]
pub mod app;
#[forbid(unsafe_code)]
pub mod archive;
#[forbid(unsafe_code)]
pub mod audit;
#[forbid(unsafe_code)]
pub mod caller;
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
pub mod intercept;
#[forbid(unsafe_code)]
pub mod logging;
#[forbid(unsafe_code)]
pub mod relay;
#[forbid(unsafe_code)]
pub mod restore;
#[forbid(unsafe_code)]
pub mod router;
#[forbid(unsafe_code)]
pub mod runtime;
#[forbid(unsafe_code)]
pub mod server;
#[forbid(unsafe_code)]
pub mod systemd;
