//! Builders for checkpoint archives in each engine's layout (FACTS 5), around real CRIU
//! images, plus the facts the test workload (tests/workload/workload.c) puts in them.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// The committed real CRIU 4.2.1 dump of the workload.
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criu-4.2.1-tree")
}

/// What the fixture's workload was started with.
pub const PORT: u16 = 34567;
pub const MARKER: &str = "FORENSIC-MARK-1234";
pub const ENV_MARK: &str = "WL_ENV_MARK=env-marker-42";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    CriO,
    Containerd,
    Podman,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    Plain,
    Gzip,
    Zstd,
    /// Two concatenated zstd frames.
    ZstdFrames,
}

fn add(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
}

fn rootfs_diff(engine: Engine, extra: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "etc/dropped-by-attacker", b"x\n");
    add(&mut b, &format!("tmp/{extra}"), b"yy\n");
    if engine == Engine::Containerd {
        add(&mut b, "usr/bin/.wh.wget", b"");
    }
    let tar = b.into_inner().unwrap();
    if engine == Engine::Containerd {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    } else {
        tar
    }
}

/// Metadata of a container named `name` in pod `pod`/`ns` as `engine` writes it.
fn metadata(engine: Engine, name: &str, time: &str) -> (String, String, Option<String>) {
    let config = format!(
        r#"{{"id":"c0ffee{name}","name":"{name}","rootfsImageName":"localhost/ckpt-shim/busybox:latest","rootfsImageRef":"sha256:1234","runtime":"runc","createdTime":"2026-11-25T10:00:00Z","checkpointedTime":"{time}"}}"#
    );
    let annotations = match engine {
        Engine::CriO => format!(
            r#"{{"io.container.manager":"cri-o","io.kubernetes.container.name":"{name}","io.kubernetes.pod.name":"web-0","io.kubernetes.pod.namespace":"shop"}}"#
        ),
        Engine::Containerd => format!(
            r#"{{"io.kubernetes.cri.container-name":"{name}","io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"shop"}}"#
        ),
        Engine::Podman => r#"{"io.container.manager":"libpod"}"#.to_string(),
    };
    let spec = format!(r#"{{"ociVersion":"1.0.2","annotations":{annotations}}}"#);
    let status = (engine == Engine::Containerd).then(|| {
        format!(r#"{{"id":"c0ffee{name}","metadata":{{"name":"{name}"}},"image":{{"image":"localhost/ckpt-shim/busybox:latest"}}}}"#)
    });
    (config, spec, status)
}

/// An archive of the CRIU images in `criu_dir`, laid out as `engine` lays it out.
pub fn archive(
    criu_dir: &Path,
    engine: Engine,
    packing: Packing,
    out: &Path,
    name: &str,
    extra: &str,
) {
    let (config, spec, status) = metadata(engine, name, "2026-11-25T11:00:00Z");
    let mut b = tar::Builder::new(Vec::new());
    add(&mut b, "config.dump", config.as_bytes());
    add(&mut b, "spec.dump", spec.as_bytes());
    if let Some(s) = status {
        add(&mut b, "status.dump", s.as_bytes());
    }
    let mut names: Vec<_> = std::fs::read_dir(criu_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let base = p.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&p).unwrap();
        if base == "stats-dump" || base == "dump.log" {
            add(&mut b, &base, &data);
        }
        add(&mut b, &format!("checkpoint/{base}"), &data);
    }
    add(&mut b, "rootfs-diff.tar", &rootfs_diff(engine, extra));
    if engine == Engine::CriO {
        add(&mut b, "deleted.files", br#"["/usr/bin/wget"]"#);
    }
    let tar = b.into_inner().unwrap();
    let bytes = match packing {
        Packing::Plain => tar,
        Packing::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        }
        Packing::Zstd => {
            ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest)
        }
        Packing::ZstdFrames => {
            let (a, b) = tar.split_at(tar.len() / 3);
            let mut v =
                ruzstd::encoding::compress_to_vec(a, ruzstd::encoding::CompressionLevel::Fastest);
            v.extend(ruzstd::encoding::compress_to_vec(
                b,
                ruzstd::encoding::CompressionLevel::Fastest,
            ));
            v
        }
    };
    std::fs::write(out, bytes).unwrap();
}

/// A fresh temporary directory for one test.
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ckpt-shim-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the ckpt-shim binary; returns (exit ok, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckpt-shim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
