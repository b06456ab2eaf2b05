//! Compiles the vendored CRI schema. protoc comes from the `protoc-bin-vendored` crate so
//! a build needs nothing from the system beyond cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; tonic-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let cri = proto_root.join("cri/api.proto");
    println!("cargo:rerun-if-changed={}", cri.display());
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .generate_default_stubs(true)
        .compile_protos(&[cri], &[proto_root.join("cri")])?;
    Ok(())
}
