//! Generated protobuf types, behind one boundary: nothing outside this module names another
//! schema's prost types directly.

/// CRI `runtime.v1` (Kubernetes cri-api), compiled from proto/cri/api.proto.
pub mod cri {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// CRIU's image messages (CRIU 4.2.1 `images/*.proto`, vendored in proto/criu/). CRIU's
/// schema has no protobuf package, so prost writes it to `_.rs`. Only `crate::criu` uses it.
pub mod criu {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
