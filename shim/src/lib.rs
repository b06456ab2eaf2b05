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
//!   (`engine`), the archive (`archive_writer`), its sidecar, the audit record.
//! - `restore`: detection of checkpoints in CreateContainer, the checks a checkpoint must
//!   pass (`policy`, `stage`), the hand-over to the runc wrapper (`plan`), tracking through
//!   StartContainer and RemoveContainer.
//! - `runtime`: every connection to the runtime (the relay's, the shim's own, CRI and
//!   containerd clients).
//! - `audit`: the hash-chained audit log. `grpc`: framing, the relayed body, statuses.
//!
//! Beside the proxy, reading checkpoints: `archive` (tar, compression, member selection),
//! `criu` (CRIU image files), `inspect` (the forensic commands), `image` (checkpoint images).
//! None of these speaks gRPC.

pub mod api;
pub mod app;
pub mod archive;
pub mod audit;
pub mod caller;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod criu;
pub mod grpc;
pub mod image;
pub mod inspect;
pub mod intercept;
pub mod logging;
pub mod relay;
pub mod restore;
pub mod router;
pub mod runtime;
pub mod server;
pub mod systemd;
pub mod timefmt;
