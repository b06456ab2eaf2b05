//! Why a checkpoint was refused or failed: the domain error inside `checkpoint`, turned into
//! the caller's gRPC status only at the edge (`intercept`) and in the audit record.

use std::path::PathBuf;

use super::policy::CRIU_OPTIONS_ANNOTATION;
use crate::grpc::status::Coded;
use crate::grpc::{Code, Status};
use crate::runtime::CallFailed;

/// What is wrong with the location kubelet asked for.
#[derive(Debug, thiserror::Error)]
pub enum LocationProblem {
    #[error("must be an absolute path")]
    NotAbsolute,
    #[error("must name a file without '.' or '..' components")]
    NotAFileName,
    #[error("has no file name")]
    NoFileName,
    #[error("its directory cannot be used: {0}")]
    Directory(std::io::Error),
    #[error("its parent is not a directory")]
    ParentNotADirectory,
    #[error("is outside the directories checkpoints may be written to ({0})")]
    Outside(String),
    #[error("its directory is not writable: {0}")]
    NotWritable(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("location {location:?}: {problem}")]
    Location {
        location: String,
        problem: LocationProblem,
    },
    #[error("location {0:?} already exists; a checkpoint never overwrites")]
    Exists(String),
    #[error("container_id is empty")]
    NoContainerId,
    #[error("container {id:?} not found: {message}")]
    NotFound { id: String, message: String },
    #[error("the runtime's ContainerStatus has no status")]
    NoStatus,
    #[error("the runtime does not say which pod container {0:?} runs in")]
    NoSandbox(String),
    #[error("container {id:?} is not running (state {state})")]
    NotRunning { id: String, state: String },
    #[error("checkpoints of pods in namespace {0:?} are denied by the node's configuration")]
    NamespaceDenied(String),
    #[error("namespace {0:?} is not among the namespaces allowed to be checkpointed")]
    NamespaceNotAllowed(String),
    #[error("annotation {CRIU_OPTIONS_ANNOTATION} asks for CRIU option {option:?}, which the node's configuration does not allow (allowed: {allowed:?})")]
    OptionNotAllowed {
        option: String,
        allowed: Vec<String>,
    },
    #[error("unknown CRIU option {0:?} in {CRIU_OPTIONS_ANNOTATION}")]
    UnknownOption(String),
    #[error("CRIU options {0:?} are only applied when the shim checkpoints itself (checkpoint.mode = emulate); the runtime's own checkpoint takes none")]
    OptionsNeedEmulate(Vec<String>),
    #[error("container {0} is already being checkpointed; try again when that one is done")]
    Busy(String),
    #[error("checkpoint.mode = native but the runtime does not implement CheckpointContainer")]
    NativeUnimplemented,
    /// A call the shim made to the runtime failed: its code is kept.
    #[error(transparent)]
    Runtime(#[from] CallFailed),
    /// The passed-through checkpoint never got an answer (the runtime's connection failed).
    #[error("{}", .0.message)]
    Upstream(Status),
    /// The runtime answered the passed-through checkpoint with an error: its code is kept.
    #[error("the runtime's checkpoint failed: {message}")]
    RuntimeFailed { code: Code, message: String },
    #[error("the checkpoint's timeout passed during the CRIU dump; it was aborted (container state afterwards: {0})")]
    DumpTimedOut(String),
    #[error("the checkpoint's timeout passed; the runtime's checkpoint was aborted (container state afterwards: {0})")]
    NativeTimedOut(String),
    #[error("CRIU dump of container {id} failed: {message}; CRIU log {log}:\n{tail}")]
    CriuFailed {
        id: String,
        message: String,
        /// Where the log was kept, or that it was not written.
        log: String,
        tail: String,
    },
    /// Writing the archive failed; `classify` says why and with which code.
    #[error("{}", super::archive_writer::classify(.0).1)]
    Archive(std::io::Error),
    #[error("receiving the runtime's archive: {}", super::archive_writer::classify(.0).1)]
    Receive(std::io::Error),
    #[error("the archive of {size} bytes is larger than the configured maximum of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the runtime reported success but wrote no archive at {}: {source}", .path.display())]
    NoArchive {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the archive {} is complete but its sidecar could not be written: {source}", .path.display())]
    Sidecar {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The shim's own machinery failed (a task, a directory).
    #[error("{0}")]
    Internal(String),
}

impl Coded for Error {
    fn code(&self) -> Code {
        match self {
            Error::Location { .. } | Error::NoContainerId | Error::UnknownOption(_) => {
                Code::InvalidArgument
            }
            Error::Exists(_) => Code::AlreadyExists,
            Error::NotFound { .. } => Code::NotFound,
            Error::NotRunning { .. } | Error::OptionsNeedEmulate(_) | Error::NoSandbox(_) => {
                Code::FailedPrecondition
            }
            Error::NamespaceDenied(_)
            | Error::NamespaceNotAllowed(_)
            | Error::OptionNotAllowed { .. } => Code::PermissionDenied,
            Error::Busy(_) => Code::Aborted,
            Error::NativeUnimplemented => Code::Unimplemented,
            Error::Runtime(e) => e.code(),
            Error::RuntimeFailed { code, .. } => *code,
            Error::Upstream(status) => status.code,
            Error::DumpTimedOut(_) | Error::NativeTimedOut(_) => Code::DeadlineExceeded,
            Error::Archive(e) | Error::Receive(e) => super::archive_writer::classify(e).0,
            Error::TooLarge { .. } => Code::ResourceExhausted,
            Error::NoStatus
            | Error::CriuFailed { .. }
            | Error::NoArchive { .. }
            | Error::Sidecar { .. }
            | Error::Internal(_) => Code::Internal,
        }
    }

    fn relayed(&self) -> Option<&Status> {
        match self {
            Error::Upstream(status) => Some(status),
            _ => None,
        }
    }
}
