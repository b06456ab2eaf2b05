//! Generated protobuf types, behind one boundary: nothing outside this module names another
//! schema's prost types directly.

/// CRI `runtime.v1` (Kubernetes cri-api), compiled from proto/cri/api.proto.
pub mod cri {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// containerd's own API (the parts the shim uses when it checkpoints a container itself),
/// compiled from proto/containerd. Module paths mirror the protobuf packages because the
/// generated code refers to sibling packages by relative paths.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod containerd {
    pub mod types {
        tonic::include_proto!("containerd.types");
    }
    pub mod v1 {
        pub mod types {
            tonic::include_proto!("containerd.v1.types");
        }
    }
    pub mod runc {
        pub mod v1 {
            tonic::include_proto!("containerd.runc.v1");

            /// The type URL containerd's runc shim expects on `CheckpointOptions` (containerd's
            /// typeurl registry names messages by their full protobuf name, no URL prefix).
            pub const CHECKPOINT_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.CheckpointOptions";
        }
    }
    pub mod services {
        pub mod version {
            pub mod v1 {
                tonic::include_proto!("containerd.services.version.v1");
            }
        }
        pub mod containers {
            pub mod v1 {
                tonic::include_proto!("containerd.services.containers.v1");
            }
        }
        pub mod tasks {
            pub mod v1 {
                tonic::include_proto!("containerd.services.tasks.v1");
            }
        }
        pub mod snapshots {
            pub mod v1 {
                tonic::include_proto!("containerd.services.snapshots.v1");
            }
        }
        pub mod images {
            pub mod v1 {
                tonic::include_proto!("containerd.services.images.v1");
            }
        }
        pub mod content {
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }
        pub mod leases {
            pub mod v1 {
                tonic::include_proto!("containerd.services.leases.v1");
            }
        }
        pub mod diff {
            pub mod v1 {
                tonic::include_proto!("containerd.services.diff.v1");
            }
        }
    }
}

/// CRIU's image messages (CRIU 4.2.1 `images/*.proto`, vendored in proto/criu/). CRIU's
/// schema has no protobuf package, so prost writes it to `_.rs`. Only `crate::criu` uses it.
pub mod criu {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}
