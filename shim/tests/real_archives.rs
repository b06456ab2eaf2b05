//! Real containerd 2.1 CRI checkpoints, made on the test bed by
//! tests/fixtures/make_containerd_fixture.py (busybox: sh with two nc listeners, an nc
//! client connected to one of them, sleeps feeding them, an open file in /tmp, a string in
//! the shell's memory, a deleted /bin/wget), and a second checkpoint of the same container
//! after it started one more listener and wrote one more file. Committed gzipped (about
//! 90 KB each); the tests read both the gzip and the plain tar that containerd wrote.
//!
//! The same workload checkpointed by ckpt-shim itself on containerd 1.6 (which has no CRI
//! checkpoint: the shim builds the archive through containerd's task API) is held to the
//! same expectations: `shim-1.6-suspect*.tar.gz`, with the shim's sidecar.

mod common;

use std::io::Read;
use std::path::PathBuf;

use common::{cli, tempdir};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn plain_copy(gz: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    let p = dir.join("suspect.tar");
    std::fs::write(&p, tar).unwrap();
    p
}

#[test]
fn containerd_2_1_checkpoint_holds_what_the_container_did() {
    suspect_holds_what_the_container_did("containerd-2.1-suspect.tar.gz", None);
}

#[test]
fn shim_checkpoint_on_containerd_1_6_holds_what_the_container_did() {
    suspect_holds_what_the_container_did(
        "shim-1.6-suspect.tar.gz",
        Some("shim-1.6-suspect.sidecar.json"),
    );
}

/// `sidecar`: the shim's `<archive>.json`, put beside the plain copy; with it the archive
/// must be recognised as the shim's and `list` must find the digest matching.
fn suspect_holds_what_the_container_did(gz: &str, sidecar: Option<&str>) {
    let dir = tempdir(gz);
    let gz = fixture(gz);
    let plain = plain_copy(&gz, &dir);
    if let Some(sidecar) = sidecar {
        std::fs::copy(fixture(sidecar), dir.join("suspect.tar.json")).unwrap();
        let (ok, out, err) = cli(&["list", dir.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert!(out.contains(" ok "), "{out}");
    }
    for path in [plain.clone(), gz.clone()] {
        let p = path.to_str().unwrap();
        let (ok, out, err) = cli(&["inspect", p, "--all", "--format", "json"]);
        assert!(ok, "{err}");
        let r: Value = serde_json::from_str(&out).unwrap();
        let c = &r["container"];
        let engine = if sidecar.is_some() && path == plain {
            "ckpt-shim"
        } else {
            "containerd"
        };
        assert_eq!(c["engine"], engine);
        assert_eq!(c["name"], "suspect");
        assert_eq!(c["pod"], "web-0");
        assert_eq!(c["namespace"], "evidence");
        assert_eq!(c["runtime"], "io.containerd.runc.v2");
        assert!(c["checkpointed"].as_str().unwrap().starts_with("20"));
        assert_eq!(r["criu"]["version"], "4.2.1");
        assert!(r["sizes"]["rootfs_diff"].as_u64().unwrap() > 0);

        let procs = r["processes"].as_array().unwrap();
        let comms: Vec<&str> = procs.iter().map(|p| p["comm"].as_str().unwrap()).collect();
        assert_eq!(comms, ["sh", "nc", "sleep", "nc", "sleep", "nc"]);
        let sh = procs[0]["pid"].clone();
        assert!(procs[1..].iter().all(|p| p["ppid"] == sh), "{procs:#?}");
        assert_eq!(procs[0]["cmdline"][0], "sh");
        assert!(procs[1]["environ"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "MARK=KNOWN-MARK-2718"));
        for p in procs {
            let files = p["files"].as_array().unwrap();
            assert!(
                files
                    .iter()
                    .any(|f| f["fd"] == 3 && f["path"] == "/tmp/evidence.txt"),
                "{files:#?}"
            );
        }
        let socks: Vec<&Value> = procs
            .iter()
            .flat_map(|p| p["sockets"].as_array().unwrap())
            .collect();
        assert!(
            socks
                .iter()
                .any(|s| s["state"] == "LISTEN" && s["local"] == "[::]:8081"),
            "{socks:#?}"
        );
        let est: Vec<&&Value> = socks
            .iter()
            .filter(|s| s["state"] == "ESTABLISHED")
            .collect();
        assert_eq!(est.len(), 2, "{socks:#?}");
        assert!(est
            .iter()
            .any(|s| s["protocol"] == "tcp" && s["remote"] == "127.0.0.1:8080"));
        assert!(est
            .iter()
            .any(|s| s["protocol"] == "tcp6" && s["local"] == "[::ffff:127.0.0.1]:8080"));

        let mounts = r["mounts"].as_array().unwrap();
        assert!(mounts
            .iter()
            .any(|m| m["mountpoint"] == "/" && m["fstype"] == "overlayfs"));
        assert!(mounts
            .iter()
            .any(|m| m["mountpoint"] == "/proc" && m["fstype"] == "proc"));
        assert!(mounts
            .iter()
            .any(|m| m["mountpoint"] == "/etc/hosts" && m["external"] == true));
        assert!(r["stats"]["frozen_time_us"].as_u64().unwrap() > 0);

        let (ok, out, err) = cli(&[
            "memparse",
            p,
            "--pid",
            &sh.to_string(),
            "--search",
            "MARK=KNOWN-MARK-2718",
            "--format",
            "json",
        ]);
        assert!(ok, "{err}");
        let hits: Vec<Value> = serde_json::from_str(&out).unwrap();
        // In the shell's heap, not only in its argv on the stack.
        assert!(
            hits.iter()
                .any(|h| !h["address"].as_str().unwrap().starts_with("0x7ff")),
            "{hits:#?}"
        );
    }
    // The rootfs diff (containerd: a gzip layer with a whiteout; the shim: a plain tar plus
    // deleted.files) shows the written file and the deleted one.
    let cp = ckpt_shim::archive::scan(
        &plain,
        ckpt_shim::archive::Want {
            rootfs_listing: true,
            ..Default::default()
        },
    )
    .unwrap();
    let deleted = cp.deleted_files.clone().unwrap_or_default();
    let changes = cp.rootfs_diff.unwrap().changes.unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.path == "/tmp/evidence.txt" && c.kind == "file" && c.size == 9),
        "{changes:#?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.path == "/bin/wget" && c.kind == "deleted")
            || deleted.iter().any(|d| d == "/bin/wget"),
        "{changes:#?} {deleted:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diff_of_two_real_checkpoints_of_one_container() {
    diff_of_two_checkpoints("containerd-2.1-suspect");
}

#[test]
fn diff_of_two_shim_checkpoints_of_one_container() {
    diff_of_two_checkpoints("shim-1.6-suspect");
}

fn diff_of_two_checkpoints(stem: &str) {
    let a = fixture(&format!("{stem}.tar.gz"));
    let b = fixture(&format!("{stem}-2.tar.gz"));
    let (ok, out, err) = cli(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert!(d["warning"].is_null(), "{d:#}");
    let added = d["processes"]["added"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{d:#}");
    assert_eq!(added[0]["comm"], "nc");
    assert_eq!(d["processes"]["removed"].as_array().unwrap().len(), 0);
    let socks = d["sockets"]["added"].as_array().unwrap();
    assert_eq!(socks.len(), 1);
    assert!(
        socks[0]
            .as_str()
            .unwrap()
            .ends_with("tcp6 LISTEN [::]:9090"),
        "{socks:?}"
    );
    assert_eq!(
        d["rootfs"]["added"],
        serde_json::json!(["file /tmp/added.txt 6"])
    );
    assert!(d["memory_total"][1].as_u64() > d["memory_total"][0].as_u64());
    let (ok, text, _) = cli(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(ok && text.contains("+ file /tmp/added.txt 6"), "{text}");
}

/// A real CRI-O 1.33.13 checkpoint (pod `demo`, namespace `lab`, container `demo-c`, made
/// without kubelet's labels: CRI-O's names are the only record). The forensic commands and
/// the restore's namespace check must read pod and namespace from CRI-O's container name.
#[test]
fn cri_o_checkpoint_names_its_pod_and_namespace() {
    let dir = tempdir("crio");
    let plain = plain_copy(&fixture("crio-1.33.13-demo.tar.gz"), &dir);
    let (ok, out, err) = cli(&["inspect", plain.to_str().unwrap(), "--format", "json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let c = &v["container"];
    assert_eq!(c["engine"], "cri-o", "{c}");
    assert_eq!(c["name"], "demo-c", "{c}");
    assert_eq!(c["pod"], "demo", "{c}");
    assert_eq!(c["namespace"], "lab", "{c}");

    let staging = dir.join("staged");
    std::fs::create_dir(&staging).unwrap();
    let limits = ckpt_shim::restore::stage::Limits {
        max_member_bytes: 1 << 30,
        max_total_bytes: 1 << 32,
    };
    let staged = ckpt_shim::restore::stage::stage(&plain, &staging, &limits).unwrap();
    assert_eq!(staged.namespace(), "lab");
    std::fs::remove_dir_all(&dir).unwrap();
}
