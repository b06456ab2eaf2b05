//! ckpt-shim's on-disk formats, one module per format, used by the writers and the readers
//! alike: the shim, the runc wrapper (`ckpt-shim-runc`) and the inspection commands.
//!
//! Layout:
//! - `members`: the names of a checkpoint archive's members and what each one is for;
//! - `config_dump`, `spec_dump`: the JSON members describing the container;
//! - `dump_log`: what is read from CRIU's log (its version);
//! - `sidecar`: `<archive>.json`, the archive's digest and provenance;
//! - `plan`: the hand-over between the shim and the runc wrapper (a staged checkpoint);
//! - `compression`: how an archive's bytes are stored, from its first bytes;
//! - `atomic`: the temporary names and fsyncs of the crash-safe writers;
//! - `time`: the RFC 3339 timestamps the metadata carries.
//!
//! No gRPC and no async runtime here: the runc wrapper runs on every runc call of the node.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod compression;
pub mod config_dump;
pub mod dump_log;
pub mod members;
pub mod plan;
pub mod sidecar;
pub mod spec_dump;
pub mod time;

mod lenient;
