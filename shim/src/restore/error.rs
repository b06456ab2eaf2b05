//! Why a restore was refused or failed: the domain error inside `restore`, turned into the
//! caller's gRPC status only at the edge (`intercept`) and in the audit record.

use std::path::PathBuf;

use super::runtime_config::NotSetUp;
use crate::grpc::status::Coded;
use crate::grpc::{Code, Status};
use crate::runtime::CallFailed;
use ckpt_format::plan::ANNOTATION;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the annotation {ANNOTATION} is reserved for the shim")]
    ReservedAnnotation,
    /// A call the shim made to the runtime failed: its code is kept.
    #[error(transparent)]
    Runtime(#[from] CallFailed),
    /// The runtime's own answer to the call the shim sent on, as it came (plus notes).
    #[error("{}", .0.message)]
    Answer(Status),
    #[error("pod sandbox {0} has no status")]
    NoSandbox(String),
    #[error("checkpoint archive {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint archive {} is outside the directories restores may read ({allowed})", .path.display())]
    OutsideAllowedDirs { path: PathBuf, allowed: String },
    #[error("checkpoint archive {} is not a file", .0.display())]
    NotAFile(PathBuf),
    #[error("checkpoint archive {} has no sidecar {} (restore.require_sidecar)", .archive.display(), .sidecar.display())]
    NoSidecar { archive: PathBuf, sidecar: PathBuf },
    #[error("{}: {source}", .sidecar.display())]
    SidecarUnreadable {
        sidecar: PathBuf,
        source: std::io::Error,
    },
    #[error("sidecar {} is not valid JSON: {source}", .sidecar.display())]
    SidecarInvalid {
        sidecar: PathBuf,
        source: serde_json::Error,
    },
    #[error("checkpoint archive {} does not match its sidecar: sha256 {sha256} ({size} bytes), sidecar says {want} ({want_size} bytes)", .archive.display())]
    DigestMismatch {
        archive: PathBuf,
        sha256: String,
        size: u64,
        want: String,
        /// As the sidecar wrote it (JSON, `null` when absent).
        want_size: String,
    },
    #[error("the checkpoint is of a container in namespace {from:?}; restoring it into namespace {into:?} is not allowed (restore.allow_cross_namespace)")]
    CrossNamespace { from: String, into: String },
    #[error("the checkpointed container had bind mounts the request does not have: {}", .0.join(", "))]
    MissingMounts(Vec<String>),
    #[error("checkpoint archive refused: {0}")]
    Refused(String),
    #[error("checkpoint archive refused: config.dump names no base image")]
    NoBaseImage,
    /// A checkpoint image whose layer cannot be read; a layout the shim does not read is
    /// the caller's mistake, a broken store the node's.
    #[error("checkpoint image {name}: {why}")]
    Image {
        name: String,
        why: String,
        unreadable_layout: bool,
    },
    #[error("cannot restore on this runtime: {0}")]
    NotSetUp(#[from] NotSetUp),
    #[error("containerd dropped the restore annotation {ANNOTATION} from the container's spec: add it to the runtime's container_annotations; the container was removed so it cannot start fresh")]
    AnnotationDropped,
    #[error("the container started without being restored (the runc wrapper did not run: check containerd's BinaryName); it was stopped")]
    StartedFresh,
    /// The shim's own machinery failed (disk, a task).
    #[error("{0}")]
    Internal(String),
}

impl Coded for Error {
    fn code(&self) -> Code {
        match self {
            Error::Runtime(e) => e.code(),
            Error::Answer(status) => status.code,
            Error::NoSandbox(_) => Code::NotFound,
            Error::Unreadable { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NotFound
            }
            Error::ReservedAnnotation
            | Error::Unreadable { .. }
            | Error::NotAFile(_)
            | Error::SidecarInvalid { .. }
            | Error::MissingMounts(_)
            | Error::Refused(_)
            | Error::NoBaseImage => Code::InvalidArgument,
            Error::Image {
                unreadable_layout, ..
            } => {
                if *unreadable_layout {
                    Code::InvalidArgument
                } else {
                    Code::Internal
                }
            }
            Error::OutsideAllowedDirs { .. }
            | Error::NoSidecar { .. }
            | Error::DigestMismatch { .. }
            | Error::CrossNamespace { .. } => Code::PermissionDenied,
            Error::NotSetUp(_) | Error::AnnotationDropped | Error::StartedFresh => {
                Code::FailedPrecondition
            }
            Error::SidecarUnreadable { .. } | Error::Internal(_) => Code::Internal,
        }
    }

    fn relayed(&self) -> Option<&Status> {
        match self {
            Error::Answer(status) => Some(status),
            _ => None,
        }
    }
}
