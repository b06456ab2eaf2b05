//! Replays the fuzz targets' corpora (shim/fuzz/corpus/criu_images, .../archives) and any
//! saved crash inputs (shim/fuzz/regressions/<target>) through the same code the fuzzer
//! runs, on stable Rust, so CI catches a change that would panic on an input the fuzzer
//! once found.
//!
//! `CKPT_WRITE_FUZZ_SEED=1 cargo test --test fuzz_corpus` (re)writes the seed made from the
//! committed real CRIU fixture.

mod common;

use std::io::Read;
use std::path::Path;

use ckpt_shim::criu::fuzz;

/// Replays every file of `<corpus>.tar.zst` (the committed, minimised corpus: a zstd
/// long-window tar keeps ~40 MB of near-identical inputs in ~170 KB).
fn replay_packed(packed: &Path, run: fn(&[u8])) -> usize {
    let Ok(f) = std::fs::File::open(packed) else {
        return 0;
    };
    let zs = ckpt_shim::archive::source::ZstdFrames::new(std::io::BufReader::new(f)).unwrap();
    let mut tar = tar::Archive::new(zs);
    let mut n = 0;
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        if !e.header().entry_type().is_file() {
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        run(&data);
        n += 1;
    }
    n
}

fn replay(dir: &Path, run: fn(&[u8])) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in rd {
        let p = e.unwrap().path();
        if p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            let data = std::fs::read(&p).unwrap();
            run(&data);
            n += 1;
        }
    }
    n
}

fn seed(with_pages: bool) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/criu-4.2.1-tree");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "dump.log" || (!with_pages && name.starts_with("pages-")) {
            continue;
        }
        files.push((name, std::fs::read(&p).unwrap()));
    }
    files.sort();
    fuzz::bundle(&files)
}

/// The CRIU images of the real containerd 2.1 checkpoint (mount namespace, IPv6 sockets,
/// six processes), pages left out to keep the seed small.
fn containerd_seed() -> Vec<u8> {
    let gz =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containerd-2.1-suspect.tar.gz");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(gz).unwrap(),
    ));
    let mut files = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let Some(base) = name.strip_prefix("checkpoint/") else {
            continue;
        };
        if base.is_empty() || base.starts_with("pages-") || !base.ends_with(".img") {
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        files.push((base.to_owned(), data));
    }
    fuzz::bundle(&files)
}

#[test]
fn seed_from_the_real_fixture_is_read_whole() {
    for (with_pages, name) in [
        (true, "seed-criu-4.2.1-tree"),
        (false, "seed-criu-4.2.1-tree-no-pages"),
    ] {
        let data = seed(with_pages);
        if std::env::var_os("CKPT_WRITE_FUZZ_SEED").is_some() {
            let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/criu_images");
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join(name), &data).unwrap();
        }
        fuzz::one_input(&data);
    }
    let data = containerd_seed();
    if std::env::var_os("CKPT_WRITE_FUZZ_SEED").is_some() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/criu_images");
        std::fs::write(out.join("seed-containerd-2.1-suspect-no-pages"), &data).unwrap();
    }
    fuzz::one_input(&data);
}

#[test]
fn corpus_and_regressions_replay_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let images: fn(&[u8]) = fuzz::one_input;
    let archives: fn(&[u8]) = ckpt_shim::inspect::fuzz::one_archive;
    let packed = replay_packed(&root.join("corpus/criu_images.tar.zst"), images)
        + replay_packed(&root.join("corpus/archives.tar.zst"), archives);
    assert!(
        packed > 100,
        "the committed corpus is missing ({packed} inputs)"
    );
    let n = packed
        + replay(&root.join("corpus/criu_images"), images)
        + replay(&root.join("regressions/criu_images"), images)
        + replay(&root.join("corpus/archives"), archives)
        + replay(&root.join("regressions/archives"), archives);
    println!("replayed {n} fuzz inputs");
}

#[test]
fn archive_seeds_are_read_whole() {
    let dir = common::tempdir("archive-seeds");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/archives");
    let write = std::env::var_os("CKPT_WRITE_FUZZ_SEED").is_some();
    if write {
        std::fs::create_dir_all(&out).unwrap();
    }
    let real =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containerd-2.1-suspect.tar.gz");
    let mut seeds = vec![(
        "seed-containerd-2.1-suspect.tar.gz".to_string(),
        std::fs::read(real).unwrap(),
    )];
    for (engine, packing, name) in [
        (
            common::Engine::CriO,
            common::Packing::Plain,
            "seed-crio.tar",
        ),
        (
            common::Engine::Podman,
            common::Packing::Gzip,
            "seed-podman.tar.gz",
        ),
        (
            common::Engine::Podman,
            common::Packing::Zstd,
            "seed-podman.tar.zst",
        ),
    ] {
        let p = dir.join(name);
        common::archive(&common::fixture(), engine, packing, &p, "app", "x");
        seeds.push((name.to_string(), std::fs::read(&p).unwrap()));
    }
    for (name, data) in seeds {
        ckpt_shim::inspect::fuzz::one_archive(&data);
        if write {
            std::fs::write(out.join(name), &data).unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
