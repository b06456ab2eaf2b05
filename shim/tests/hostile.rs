//! Malformed, truncated and hostile archives: each gives a clean error that names the file
//! and the offset, never a panic.

mod common;

use std::path::Path;

use common::{archive, cli, fixture, tempdir, Engine, Packing};

/// A plain tar with these members, written raw so names and sizes can lie.
fn raw_tar(path: &Path, members: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        // Write the name bytes directly: the builder refuses '..' itself.
        let n = name.as_bytes();
        h.as_gnu_mut().unwrap().name[..n.len()].copy_from_slice(n);
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

fn fails_cleanly(args: &[&str]) -> String {
    let (ok, out, err) = cli(args);
    assert!(!ok, "should fail: {args:?}\n{out}");
    assert!(!err.contains("panicked"), "panic on {args:?}: {err}");
    assert!(err.starts_with("ckpt-shim: "), "{err}");
    err
}

#[test]
fn tar_slip_member_names_are_refused() {
    let dir = tempdir("slip");
    for name in ["../../etc/cron.d/x", "/etc/passwd", "checkpoint/../../x"] {
        let p = dir.join("slip.tar");
        raw_tar(&p, &[("config.dump", b"{}"), (name, b"boom")]);
        let err = fails_cleanly(&["inspect", p.to_str().unwrap()]);
        assert!(
            err.contains("unsafe member name") && err.contains("offset"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_declared_member_length_is_refused() {
    let dir = tempdir("huge");
    let p = dir.join("huge.tar");
    raw_tar(
        &p,
        &[
            ("config.dump", b"{}"),
            ("checkpoint/pstree.img", b"0123456789"),
        ],
    );
    // Rewrite the second header's size field to 1 GiB (octal) and fix its checksum.
    let mut bytes = std::fs::read(&p).unwrap();
    let hdr = 1024;
    let size = format!("{:011o}\0", 1u64 << 30);
    bytes[hdr + 124..hdr + 136].copy_from_slice(size.as_bytes());
    bytes[hdr + 148..hdr + 156].copy_from_slice(b"        ");
    let sum: u32 = bytes[hdr..hdr + 512].iter().map(|&b| u32::from(b)).sum();
    bytes[hdr + 148..hdr + 156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let err = fails_cleanly(&["inspect", p.to_str().unwrap()]);
    assert!(
        err.contains("checkpoint/pstree.img") && err.contains("declares 1073741824 bytes"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_magic_names_image_and_offset() {
    let dir = tempdir("magic");
    let criu = dir.join("criu");
    std::fs::create_dir_all(&criu).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, criu.join(p.file_name().unwrap())).unwrap();
    }
    let mut pstree = std::fs::read(criu.join("pstree.img")).unwrap();
    pstree[4..8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    std::fs::write(criu.join("pstree.img"), &pstree).unwrap();
    let p = dir.join("magic.tar");
    archive(&criu, Engine::CriO, Packing::Plain, &p, "app", "x");
    let err = fails_cleanly(&["inspect", p.to_str().unwrap(), "--all"]);
    assert!(
        err.contains("pstree.img: offset 4: wrong magic 0x12345678"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn truncated_images_and_archives() {
    let dir = tempdir("trunc");
    let criu = dir.join("criu");
    std::fs::create_dir_all(&criu).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, criu.join(p.file_name().unwrap())).unwrap();
    }
    // A pages file cut short: memory reads say which file and where.
    let pages = criu.join("pages-1.img");
    let len = std::fs::metadata(&pages).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap();
    f.set_len(len - 4096).unwrap();
    let p = dir.join("short-pages.tar");
    archive(&criu, Engine::CriO, Packing::Plain, &p, "app", "x");
    let err = fails_cleanly(&["memparse", p.to_str().unwrap(), "--search", "x"]);
    assert!(
        err.contains("checkpoint/pages-1.img: offset") && err.contains("truncated"),
        "{err}"
    );
    // --cmd on the same archive reports the problem per process instead of failing.
    let (ok, out, _) = cli(&["inspect", p.to_str().unwrap(), "--ps-tree", "--cmd"]);
    assert!(
        ok && out.contains("Memory: checkpoint/pages-1.img"),
        "{out}"
    );

    // A metadata image cut in the middle of an entry.
    std::fs::copy(fixture().join("pages-1.img"), &pages).unwrap();
    let files = std::fs::read(criu.join("files.img")).unwrap();
    std::fs::write(criu.join("files.img"), &files[..files.len() - 3]).unwrap();
    let p = dir.join("short-files.tar");
    archive(&criu, Engine::CriO, Packing::Plain, &p, "app", "x");
    let err = fails_cleanly(&["inspect", p.to_str().unwrap(), "--files"]);
    assert!(
        err.contains("files.img: offset") && err.contains("truncated"),
        "{err}"
    );

    // Whole archives cut short, plain and compressed, at several points.
    let good = dir.join("good.tar");
    archive(
        &fixture(),
        Engine::Containerd,
        Packing::Plain,
        &good,
        "app",
        "x",
    );
    let gz = dir.join("good.tar.gz");
    archive(&fixture(), Engine::Podman, Packing::Gzip, &gz, "app", "x");
    for src in [&good, &gz] {
        let bytes = std::fs::read(src).unwrap();
        for cut in [
            10,
            600,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1500,
        ] {
            let p = dir.join("cut.tar");
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let (ok, _, err) = cli(&["inspect", p.to_str().unwrap(), "--all"]);
            assert!(!err.contains("panicked"), "{err}");
            if cut < bytes.len() / 2 {
                assert!(!ok, "cut at {cut} of {src:?} accepted");
            }
        }
    }
    // Not an archive at all, and an empty file.
    let junk = dir.join("junk.tar");
    std::fs::write(&junk, vec![0x41u8; 3000]).unwrap();
    fails_cleanly(&["inspect", junk.to_str().unwrap()]);
    std::fs::write(&junk, b"").unwrap();
    fails_cleanly(&["inspect", junk.to_str().unwrap()]);
    fails_cleanly(&["inspect", "/nonexistent/x.tar"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn random_corruption_never_panics() {
    // Flip bytes all over a real archive; any outcome but a panic is fine.
    let dir = tempdir("flip");
    let good = dir.join("good.tar");
    archive(&fixture(), Engine::CriO, Packing::Plain, &good, "app", "x");
    let bytes = std::fs::read(&good).unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..40 {
        let mut b = bytes.clone();
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % b.len() as u64) as usize;
            b[i] ^= (seed >> 32) as u8 | 1;
        }
        let p = dir.join(format!("flip-{round}.tar"));
        std::fs::write(&p, &b).unwrap();
        for args in [
            vec!["inspect", p.to_str().unwrap(), "--all"],
            vec!["memparse", p.to_str().unwrap(), "--search", "SECRET"],
        ] {
            let (_, _, err) = cli(&args);
            assert!(!err.contains("panicked"), "round {round}: {err}");
        }
        std::fs::remove_file(&p).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
