//! Generated protobuf types, behind one boundary: nothing outside this module names another
//! schema's prost types directly.

/// CRI `runtime.v1` (Kubernetes cri-api), compiled from proto/cri/api.proto.
pub mod cri {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("runtime.v1");
}
