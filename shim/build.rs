//! Compiles the vendored schemas: CRI (gRPC services), containerd (clients) and CRIU's
//! image messages (messages only). protoc comes from the `protoc-bin-vendored` crate so a
//! build needs nothing from the system beyond cargo.

use std::path::Path;

/// The containerd services the shim calls itself (see proto/containerd/README.md).
const CONTAINERD: &[&str] = &[
    "api/services/version/v1/version.proto",
    "api/services/containers/v1/containers.proto",
    "api/services/tasks/v1/tasks.proto",
    "api/services/snapshots/v1/snapshots.proto",
    "api/services/images/v1/images.proto",
    "api/services/content/v1/content.proto",
    "api/services/leases/v1/leases.proto",
    "api/services/diff/v1/diff.proto",
    "api/types/runc/options/oci.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; tonic-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    // The CRI servers are only for the tests' fake runtime (feature `cri-server`): the shim
    // itself relays CRI without serving it through tonic.
    let cri_server = std::env::var_os("CARGO_FEATURE_CRI_SERVER").is_some();
    let cri = proto_root.join("cri/api.proto");
    tonic_prost_build::configure()
        .build_server(cri_server)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_protos(&[cri], &[proto_root.join("cri")])?;

    // Client only: the shim never serves containerd's API.
    let containerd_root = proto_root.join("containerd");
    let prefix = containerd_root.join("github.com/containerd/containerd");
    let files: Vec<_> = CONTAINERD.iter().map(|f| prefix.join(f)).collect();
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_protos(&files, &[containerd_root])?;

    // CRIU's images are proto2 without a package; prost ignores the `[(criu).*]` field
    // options (they only steer CRIU's own text decoder), but protoc needs opts.proto's
    // import of google/protobuf/descriptor.proto, which protoc-bin-vendored ships.
    let criu_dir = proto_root.join("criu");
    let mut criu_protos = Vec::new();
    for entry in std::fs::read_dir(&criu_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "proto") {
            criu_protos.push(path);
        }
    }
    criu_protos.sort();
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .compile_protos(
            &criu_protos,
            &[criu_dir, protoc_bin_vendored::include_path()?],
        )?;
    Ok(())
}
