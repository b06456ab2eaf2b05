//! The forensic commands on archives of every engine's layout built around real CRIU 4.2.1
//! images of the test workload (a known process tree, an open file, a listening socket, an
//! established connection, a known string in memory): each is found.

mod common;

use common::{archive, cli, fixture, tempdir, Engine, Packing, ENV_MARK, MARKER, PORT};
use serde_json::Value;

fn inspect_json(path: &str) -> Value {
    let (ok, out, err) = cli(&["inspect", path, "--all", "--format", "json"]);
    assert!(ok, "inspect failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// Everything the workload put into the checkpoint is in the report.
fn check_workload(r: &Value) {
    assert_eq!(r["schema"], "ckpt-shim.inspect/v1");
    assert_eq!(r["criu"]["version"], "4.2.1");
    let procs = r["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "{procs:#?}");
    let parent = &procs[0];
    let child = &procs[1];
    assert_eq!(parent["comm"], "workload");
    assert_eq!(child["comm"], "wl-child");
    assert_eq!(child["ppid"], parent["pid"]);
    let cmd: Vec<&str> = parent["cmdline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cmd[3], MARKER, "{cmd:?}");
    assert!(parent["environ"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == ENV_MARK));
    let files = parent["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("/evidence.txt") && f["mode"] == "rw"),
        "{files:#?}"
    );
    let socks = parent["sockets"].as_array().unwrap();
    let listen = format!("127.0.0.1:{PORT}");
    assert!(socks.iter().any(|s| s["protocol"] == "tcp"
        && s["state"] == "LISTEN"
        && s["local"] == listen.as_str()));
    let est: Vec<&Value> = socks
        .iter()
        .filter(|s| s["state"] == "ESTABLISHED")
        .collect();
    assert_eq!(est.len(), 2, "{socks:#?}");
    assert!(est.iter().any(|s| s["remote"] == listen.as_str()));
    assert!(est.iter().any(|s| s["local"] == listen.as_str()));
    assert!(socks.iter().any(|s| s["protocol"] == "unix"
        && s["state"] == "LISTEN"
        && s["local"].as_str().unwrap().ends_with("/wl.sock")));
    assert!(r["stats"]["pages_written"].as_u64().unwrap() > 0);
    assert!(r["sizes"]["memory_pages"].as_u64().unwrap() > 0);
}

#[test]
fn bare_criu_directory() {
    let r = inspect_json(fixture().to_str().unwrap());
    check_workload(&r);
    assert_eq!(r["container"]["engine"], "unknown");
}

#[test]
fn every_engine_and_packing() {
    let dir = tempdir("engines");
    for (engine, packing, expect) in [
        (Engine::CriO, Packing::Plain, "cri-o"),
        (Engine::Containerd, Packing::Plain, "containerd"),
        (Engine::Podman, Packing::Gzip, "podman"),
        (Engine::Podman, Packing::Zstd, "podman"),
        (Engine::Podman, Packing::ZstdFrames, "podman"),
    ] {
        let path = dir.join(format!("{expect}-{packing:?}.tar"));
        archive(&fixture(), engine, packing, &path, "app", "x");
        let r = inspect_json(path.to_str().unwrap());
        check_workload(&r);
        let c = &r["container"];
        assert_eq!(c["engine"], expect);
        assert_eq!(c["name"], "app");
        assert_eq!(c["checkpointed"], "2026-11-25T11:00:00Z");
        assert_eq!(c["image"], "localhost/ckpt-shim/busybox:latest");
        if engine != Engine::Podman {
            assert_eq!(c["pod"], "web-0");
            assert_eq!(c["namespace"], "shop");
        }
        assert!(r["sizes"]["rootfs_diff"].as_u64().unwrap() > 0);
        let (ok, tree, err) = cli(&["inspect", path.to_str().unwrap(), "--all"]);
        assert!(ok, "{err}");
        assert!(tree.contains("[4] tcp LISTEN 127.0.0.1:34567"), "{tree}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn memparse_finds_the_heap_string_with_its_address() {
    let dir = tempdir("memparse");
    let path = dir.join("a.tar");
    archive(
        &fixture(),
        Engine::Containerd,
        Packing::Plain,
        &path,
        "app",
        "x",
    );
    let r = inspect_json(path.to_str().unwrap());
    let pid = r["processes"][0]["pid"].as_u64().unwrap().to_string();
    let p = path.to_str().unwrap();
    let (ok, out, err) = cli(&[
        "memparse",
        p,
        "--pid",
        &pid,
        "--search",
        "heap-secret=",
        "--context",
        "32",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(hits.len(), 1, "{hits:#?}");
    assert!(hits[0]["context"].as_str().unwrap().contains(MARKER));
    assert!(hits[0]["address"].as_str().unwrap().starts_with("0x"));
    let (ok, out, _) = cli(&[
        "memparse",
        p,
        "--search-regex",
        "FORENSIC-[A-Z]+-[0-9]+",
        "--context",
        "0",
        "--format",
        "json",
    ]);
    assert!(ok);
    let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
    // Heap copy and argv in the parent, argv in the child.
    assert!(hits.len() >= 3, "{hits:#?}");
    assert!(hits.iter().all(|h| h["text"] == MARKER));
    let (ok, out, _) = cli(&["memparse", p]);
    assert!(ok);
    assert!(out.contains("wl-child") && out.contains("pages-"), "{out}");
    // A compressed archive gives the same answers (pages spooled, not held in memory).
    let gz = dir.join("a.tar.gz");
    archive(&fixture(), Engine::Podman, Packing::Gzip, &gz, "app", "x");
    let (ok, out, err) = cli(&[
        "memparse",
        gz.to_str().unwrap(),
        "--pid",
        &pid,
        "--search",
        "heap-secret=",
        "--context",
        "32",
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 1);
    let (ok, _, err) = cli(&["memparse", p, "--pid", "999999"]);
    assert!(!ok && err.contains("no process 999999"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn list_checks_sidecar_digests() {
    let dir = tempdir("list");
    for n in ["good", "bad", "none"] {
        archive(
            &fixture(),
            Engine::Containerd,
            Packing::Plain,
            &dir.join(format!("{n}.tar")),
            n,
            "x",
        );
    }
    let digest = |p: &std::path::Path| ckpt_shim::inspect::list::sha256_file(p).unwrap();
    let good = dir.join("good.tar");
    let size = std::fs::metadata(&good).unwrap().len();
    std::fs::write(
        dir.join("good.tar.json"),
        format!(r#"{{"digest":"sha256:{}","size":{size}}}"#, digest(&good)),
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.tar.json"),
        format!(r#"{{"digest":"sha256:{}","size":{size}}}"#, "00".repeat(32)),
    )
    .unwrap();
    // ckpt-shim's own sidecar spelling, and its mark of an archive it made itself.
    let shim = dir.join("shim.tar");
    archive(
        &fixture(),
        Engine::Containerd,
        Packing::Plain,
        &shim,
        "shim",
        "x",
    );
    let shim_size = std::fs::metadata(&shim).unwrap().len();
    std::fs::write(
        dir.join("shim.tar.json"),
        format!(
            r#"{{"sha256":"{}","size":{shim_size},"engine":"emulated","shim_version":"0.1.0"}}"#,
            digest(&shim)
        ),
    )
    .unwrap();
    let (ok, out, _) = cli(&["list", dir.to_str().unwrap(), "--format", "json"]);
    assert!(!ok, "a mismatch must fail the command");
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let by = |n: &str| rows.iter().find(|r| r["container"] == n).unwrap().clone();
    assert_eq!(by("good")["digest"], "ok");
    assert_eq!(by("bad")["digest"], "mismatch");
    assert_eq!(by("none")["digest"], "no sidecar");
    assert_eq!(by("shim")["digest"], "ok");
    let (ok, out, _) = cli(&["inspect", shim.to_str().unwrap(), "--format", "json"]);
    assert!(ok);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["container"]["engine"], "ckpt-shim");
    assert_eq!(by("good")["pod"], "web-0");
    assert_eq!(by("good")["namespace"], "shop");
    let (_, text, _) = cli(&["list", dir.to_str().unwrap()]);
    assert!(
        text.lines().count() == 5 && text.contains("no sidecar"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diff_reports_rootfs_and_identity_changes() {
    let dir = tempdir("diff");
    let (a, b) = (dir.join("a.tar"), dir.join("b.tar"));
    archive(
        &fixture(),
        Engine::Containerd,
        Packing::Plain,
        &a,
        "app",
        "one",
    );
    archive(
        &fixture(),
        Engine::Containerd,
        Packing::Plain,
        &b,
        "app",
        "two",
    );
    let (ok, out, err) = cli(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert!(d["warning"].is_null());
    assert_eq!(d["rootfs"]["added"], serde_json::json!(["file /tmp/two 3"]));
    assert_eq!(
        d["rootfs"]["removed"],
        serde_json::json!(["file /tmp/one 3"])
    );
    assert_eq!(d["processes"]["added"].as_array().unwrap().len(), 0);
    let c = dir.join("c.tar");
    archive(
        &fixture(),
        Engine::Containerd,
        Packing::Plain,
        &c,
        "other",
        "one",
    );
    let (ok, out, _) = cli(&["diff", a.to_str().unwrap(), c.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("WARNING: not the same container"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plain_archives_are_read_by_seeking_past_unneeded_members() {
    // The fixture's images plus a 64 MiB pages file: scanning for metadata must not read it.
    let dir = tempdir("seek");
    let criu = dir.join("criu");
    std::fs::create_dir_all(&criu).unwrap();
    for e in std::fs::read_dir(fixture()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, criu.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(criu.join("pages-9.img"), vec![0x5au8; 64 << 20]).unwrap();
    let path = dir.join("big.tar");
    archive(&criu, Engine::CriO, Packing::Plain, &path, "app", "x");
    let size = std::fs::metadata(&path).unwrap().len();
    let cp = ckpt_shim::archive::scan(&path, ckpt_shim::archive::Want::default()).unwrap();
    assert!(
        cp.bytes_read < 2 << 20,
        "read {} of {size} bytes",
        cp.bytes_read
    );
    assert_eq!(cp.pages_sizes["pages-9.img"], 64 << 20);
    // Asking for memory access still reads nothing more: pages are read in place later.
    let cp = ckpt_shim::archive::scan(
        &path,
        ckpt_shim::archive::Want {
            pages: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        cp.bytes_read < 2 << 20,
        "read {} of {size} bytes",
        cp.bytes_read
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compressed_archives_keep_only_argv_and_environ_when_that_is_all_that_is_asked() {
    let dir = tempdir("capture");
    let gz = dir.join("a.tar.gz");
    archive(&fixture(), Engine::Podman, Packing::Gzip, &gz, "app", "x");
    let want = ckpt_shim::archive::Want {
        pages: true,
        args_only: true,
        ..Default::default()
    };
    let cp = ckpt_shim::archive::scan(&gz, want).unwrap();
    assert!(!cp.pages.is_empty());
    assert!(
        cp.pages.values().all(|p| p.is_partial()),
        "pages were spooled whole"
    );
    // The same archive read for memparse keeps everything.
    let want = ckpt_shim::archive::Want {
        pages: true,
        ..Default::default()
    };
    let cp = ckpt_shim::archive::scan(&gz, want).unwrap();
    assert!(cp.pages.values().all(|p| !p.is_partial()));
    std::fs::remove_dir_all(&dir).unwrap();
}
