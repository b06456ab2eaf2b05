//! End to end with a real CRIU (4.2 or newer; FACTS 2): start the test workload, dump it
//! with CRIU, pack the images as CRI-O and Podman do, and check that the commands find what
//! the workload holds. Needs root, a C compiler and CRIU: the CRIU wrapper of the test bed
//! (/var/lib/ckpt-shim-testbed/dist/criu-bin/criu), `$CKPT_CRIU`, or `criu` on PATH. Without
//! them the test prints why and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{archive, cli, tempdir, Engine, Packing};
use serde_json::Value;

fn criu() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CKPT_CRIU").map(PathBuf::from),
        Some(PathBuf::from(
            "/var/lib/ckpt-shim-testbed/dist/criu-bin/criu",
        )),
        Some(PathBuf::from("criu")),
    ];
    candidates.into_iter().flatten().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let v = String::from_utf8_lossy(&o.stdout).into_owned();
                let ver = v.split_whitespace().nth(1)?.to_owned();
                let mut parts = ver.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                let (major, minor) = (parts.next()?, parts.next().unwrap_or(0));
                Some(major > 4 || (major == 4 && minor >= 2))
            })
            .unwrap_or(false)
    })
}

fn skip(why: &str) {
    println!("SKIPPED live CRIU test: {why}");
}

struct Workload {
    pid: u32,
    child: std::process::Child,
}

impl Drop for Workload {
    fn drop(&mut self) {
        // The dump normally ends the tree; make sure nothing is left behind.
        // pid 0 would mean our own process group: only a known pid is signalled.
        if self.pid > 1 {
            unsafe { libc::kill(-(self.pid as i32), libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, dir: &Path, port: u16, marker: &str, fill_mb: u32) -> Workload {
    let mut cmd = Command::new("setsid");
    cmd.arg(bin).arg(dir).arg(port.to_string()).arg(marker);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("WL_ENV_MARK", "live-env-7");
    if fill_mb > 0 {
        cmd.env("WL_FILL_MB", fill_mb.to_string());
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut wl = Workload {
        pid: 0,
        child: cmd.spawn().expect("start workload"),
    };
    let ready = dir.join("ready");
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&ready) {
            if let Ok(pid) = s.trim().parse() {
                wl.pid = pid;
                return wl;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "workload did not get ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Builds the workload, runs it and dumps it; returns the CRIU image directory.
pub fn dump_workload(criu: &Path, dir: &Path, port: u16, marker: &str, fill_mb: u32) -> PathBuf {
    let bin = dir.join("workload");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/workload.c");
    let ok = Command::new("cc")
        .args(["-O1", "-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .map(|s| s.success());
    if !matches!(ok, Ok(true)) {
        let ok = Command::new("cc")
            .args(["-O1", "-o"])
            .arg(&bin)
            .arg(&src)
            .status()
            .unwrap();
        assert!(ok.success(), "cc failed");
    }
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let wl = start(&bin, &run, port, marker, fill_mb);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let out = Command::new(criu)
        .args(["dump", "--tcp-established", "-v4", "-o", "dump.log", "-t"])
        .arg(wl.pid.to_string())
        .arg("-D")
        .arg(&images)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "criu dump failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(images.join("dump.log")).unwrap_or_default()
    );
    images
}

#[test]
fn real_dump_of_a_known_tree_is_read_back() {
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root");
    }
    let Some(criu) = criu() else {
        return skip("no CRIU >= 4.2 (set CKPT_CRIU or run tests/testbed/testbed)");
    };
    if Command::new("cc").arg("--version").output().is_err() {
        return skip("no C compiler");
    }
    let dir = tempdir("live");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let marker = format!("LIVE-MARK-{}", std::process::id());
    let images = dump_workload(&criu, &dir, port, &marker, 0);

    for (engine, packing, name) in [
        (Engine::CriO, Packing::Plain, "crio.tar"),
        (Engine::Podman, Packing::Gzip, "podman.tar.gz"),
    ] {
        let path = dir.join(name);
        archive(&images, engine, packing, &path, "live", "x");
        let p = path.to_str().unwrap();
        let (ok, out, err) = cli(&["inspect", p, "--all", "--format", "json"]);
        assert!(ok, "{err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let procs = r["processes"].as_array().unwrap();
        assert_eq!(procs.len(), 2);
        assert_eq!(procs[1]["comm"], "wl-child");
        assert_eq!(procs[0]["cmdline"][3], marker.as_str());
        assert!(procs[0]["environ"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "WL_ENV_MARK=live-env-7"));
        assert!(procs[0]["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().ends_with("run/evidence.txt")));
        let socks = procs[0]["sockets"].as_array().unwrap();
        let local = format!("127.0.0.1:{port}");
        assert!(
            socks
                .iter()
                .any(|s| s["state"] == "LISTEN" && s["local"] == local.as_str()),
            "{socks:#?}"
        );
        assert_eq!(
            socks.iter().filter(|s| s["state"] == "ESTABLISHED").count(),
            2,
            "{socks:#?}"
        );
        let (ok, out, err) = cli(&[
            "memparse",
            p,
            "--search",
            &format!("heap-secret={marker}"),
            "--format",
            "json",
        ]);
        assert!(ok, "{err}");
        let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(hits.len(), 1, "{hits:#?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
