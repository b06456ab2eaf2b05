//! CheckpointContainer through the shim on the real test bed: containerd 1.6 and 1.7
//! (the shim checkpoints through containerd's API) and 2.1 (the runtime's own checkpoint,
//! with the shim's work around it). Root only; skipped with a printed reason otherwise.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use ckpt_shim::api::cri::ContainerState;
use ckpt_shim_tests::bed::{self, *};
use sha2::{Digest, Sha256};
use tonic::Code;

const COUNTER: &str = "rm -f /bin/pidof; i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; done";

fn members(archive: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        if !name.ends_with(".img") {
            e.read_to_end(&mut data).unwrap();
        }
        out.insert(name, data);
    }
    out
}

fn sha256_file(path: &Path) -> String {
    let data = std::fs::read(path).unwrap();
    Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn scenario(instance: &str, engine: &str) {
    if let Some(why) = skip() {
        say(&format!("checkpoint on {instance}: skipped: {why}"));
        return;
    }
    let bed = Bed::up(instance);
    let dirs = Dirs::new();
    let shim = shim(&bed, &dirs, "").await;
    let mut cri = cri(&shim.socket).await;
    let pod = pod(&mut cri, &bed, "counter-pod", "ckpt-test").await;
    let (id, log) = container(&mut cri, &bed, &pod, "counter", COUNTER, &[]).await;
    wait_for("3 counter lines", Duration::from_secs(10), || {
        counts(&log).len() >= 3
    })
    .await;

    // The capability is detected at start, not at the first checkpoint.
    wait_for(
        "capability detection at start",
        Duration::from_secs(10),
        || shim.logs().contains("checkpoint capability detected"),
    )
    .await;

    // The checkpoint, and what it must produce.
    let location = dirs.archives().join("counter.tar");
    let started = std::time::Instant::now();
    checkpoint(&mut cri, &id, &location, 60)
        .await
        .unwrap_or_else(|e| panic!("checkpoint failed: {e:?}\n{}", shim.logs()));
    say(&format!(
        "{instance}: checkpoint through the shim {:?}, {} bytes",
        started.elapsed(),
        std::fs::metadata(&location).unwrap().len()
    ));
    let mode = std::fs::metadata(&location).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let m = members(&location);
    for name in [
        "config.dump",
        "spec.dump",
        "status.dump",
        "rootfs-diff.tar",
        "dump.log",
        "stats-dump",
        "container.log",
        "checkpoint/inventory.img",
    ] {
        assert!(
            m.contains_key(name),
            "{name} missing; members: {:?}",
            m.keys()
        );
    }
    let spec: serde_json::Value = serde_json::from_slice(&m["spec.dump"]).unwrap();
    assert_eq!(
        spec["annotations"]["io.kubernetes.cri.sandbox-namespace"],
        "ckpt-test"
    );
    assert_eq!(
        spec["annotations"]["io.kubernetes.cri.container-name"],
        "counter"
    );
    let config: serde_json::Value = serde_json::from_slice(&m["config.dump"]).unwrap();
    assert!(config["id"].as_str().unwrap().starts_with(&id[..12]));
    let status: serde_json::Value = serde_json::from_slice(&m["status.dump"]).unwrap();
    assert_eq!(status["metadata"]["name"], "counter");
    if engine == "emulated" {
        // Plain tar of the writable layer plus the list of deleted image files.
        let mut diff = tar::Archive::new(&m["rootfs-diff.tar"][..]);
        let names: Vec<String> = diff
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(names.iter().any(|n| n == "tmp/count"), "{names:?}");
        let deleted: Vec<String> = serde_json::from_slice(&m["deleted.files"]).unwrap();
        assert!(deleted.contains(&"/bin/pidof".to_string()), "{deleted:?}");
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs.archives().join("counter.tar.json")).unwrap())
            .unwrap();
    assert_eq!(sidecar["sha256"], sha256_file(&location));
    assert_eq!(sidecar["size"], std::fs::metadata(&location).unwrap().len());
    assert_eq!(sidecar["engine"], engine);
    assert_eq!(sidecar["pod"], "counter-pod");
    assert_eq!(sidecar["namespace"], "ckpt-test");
    assert!(
        sidecar["criu_version"].as_str().unwrap().starts_with("4."),
        "{sidecar}"
    );
    // The forensic reader understands what the checkpoint wrote.
    let out = std::process::Command::new(ckpt_shim_tests::shim::binary())
        .args(["inspect", "--all", "--format", "json"])
        .arg(&location)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["container"]["name"], "counter", "{report}");
    assert_eq!(report["container"]["namespace"], "ckpt-test");
    let expected_engine = if engine == "emulated" {
        "ckpt-shim"
    } else {
        "containerd"
    };
    assert_eq!(report["container"]["engine"], expected_engine);
    let processes = report["processes"].as_array().expect("process tree");
    let init = processes
        .iter()
        .find(|p| p["ppid"] == 0)
        .unwrap_or_else(|| panic!("no root process in {processes:?}"));
    assert_eq!(init["comm"], "sh", "{init}");
    assert!(
        init["cmdline"]
            .as_array()
            .is_some_and(|a| a.iter().any(|w| w == "sh")),
        "cmdline read from the memory pages: {init}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dirs.archives())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The container goes on.
    let n = counts(&log).len();
    wait_for("the counter going on", Duration::from_secs(5), || {
        counts(&log).len() > n + 2
    })
    .await;
    assert_eq!(
        state(&mut cri, &id).await,
        ContainerState::ContainerRunning as i32
    );

    // Errors.
    let code = |r: Result<(), tonic::Status>| r.map(|_| Code::Ok).unwrap_or_else(|e| e.code());
    let loc2 = dirs.archives().join("second.tar");
    assert_eq!(
        code(checkpoint(&mut cri, "no-such-container", &loc2, 10).await),
        Code::NotFound
    );
    assert_eq!(
        code(checkpoint(&mut cri, &id, Path::new("relative.tar"), 10).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(checkpoint(&mut cri, &id, Path::new("/tmp/outside.tar"), 10).await),
        Code::InvalidArgument
    );
    assert_eq!(
        code(checkpoint(&mut cri, &id, &dirs.archives().join("missing/x.tar"), 10).await),
        Code::InvalidArgument
    );
    let (done, _) = container(&mut cri, &bed, &pod, "exits", "true", &[]).await;
    wait_for(
        "the short container to exit",
        Duration::from_secs(10),
        || futures_lite_state(&shim.socket, &done) == ContainerState::ContainerExited as i32,
    )
    .await;
    assert_eq!(
        code(checkpoint(&mut cri, &done, &loc2, 10).await),
        Code::FailedPrecondition
    );
    let denied_pod = bed::pod(&mut cri, &bed, "denied-pod", "forbidden").await;
    let (denied, _) = container(&mut cri, &bed, &denied_pod, "sleeper", "sleep 1000", &[]).await;
    assert_eq!(
        code(checkpoint(&mut cri, &denied, &loc2, 10).await),
        Code::PermissionDenied
    );
    // Labels are the creator's words, not the runtime's: a container whose labels claim
    // another pod and namespace is still judged by the sandbox it runs in.
    let mut lying = create_request(
        &denied_pod,
        "liar",
        bed.var("BUSYBOX_IMAGE"),
        &["sh", "-c", "sleep 1000"],
        &[],
    );
    if let Some(config) = lying.config.as_mut() {
        config.labels = [
            ("io.kubernetes.pod.namespace", "default"),
            ("io.kubernetes.pod.name", "innocent"),
            (
                "io.kubernetes.pod.uid",
                "00000000-0000-0000-0000-000000000000",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    }
    let liar = cri
        .create_container(lying)
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.start_container(ckpt_shim::api::cri::StartContainerRequest {
        container_id: liar.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        code(checkpoint(&mut cri, &liar, &loc2, 10).await),
        Code::PermissionDenied
    );
    assert!(!loc2.exists());

    // Two at once of one container: one is done, the other ABORTED; never two writers.
    let mut cri2 = bed::cri(&shim.socket).await;
    let (c1, c2) = (
        dirs.archives().join("c1.tar"),
        dirs.archives().join("c2.tar"),
    );
    let (a, b) = tokio::join!(
        checkpoint(&mut cri, &id, &c1, 60),
        checkpoint(&mut cri2, &id, &c2, 60)
    );
    let mut codes = [code(a), code(b)];
    codes.sort_by_key(|c| *c as i32);
    assert_eq!(codes, [Code::Ok, Code::Aborted]);

    // Every attempt is in the audit log and the chain holds.
    let audit = std::fs::read_to_string(dirs.audit()).unwrap();
    let records = ckpt_shim::audit::verify(audit.as_bytes()).unwrap();
    assert_eq!(records, 10, "{audit}");
    assert!(audit.contains("\"result\":\"denied\""));
    let liar_record = audit
        .lines()
        .find(|l| l.contains(&format!("\"container_id\":\"{liar}\"")))
        .expect("the labelled container's refusal is audited");
    assert!(
        liar_record.contains("\"namespace\":\"forbidden\"")
            && liar_record.contains("\"pod\":\"denied-pod\""),
        "identity from the sandbox, not the labels: {liar_record}"
    );

    remove_pod(&mut cri, &denied_pod).await;
    remove_pod(&mut cri, &pod).await;
    shim.stop().await;
}

/// Container state, blocking (for use inside wait_for's closure).
fn futures_lite_state(socket: &Path, id: &str) -> i32 {
    let socket = socket.to_path_buf();
    let id = id.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let mut c = bed::cri(&socket).await;
                state(&mut c, &id).await
            })
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn emulated_on_containerd_1_6() {
    scenario("1.6-ck", "emulated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn emulated_on_containerd_1_7() {
    scenario("1.7-ck", "emulated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn native_on_containerd_2_1() {
    scenario("2.1-ck", "native").await;
}

/// Holds ~1 GiB in a shell variable, then counts: big enough that a checkpoint takes
/// longer than the smallest CRI timeout (1 s).
const BIG: &str = "x=$(dd if=/dev/zero bs=1M count=1024 2>/dev/null | tr '\\0' x); echo ready; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done";

fn dot_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A large container: one full checkpoint (timed, with the shim's peak memory), one whose
/// timeout passes (DEADLINE_EXCEEDED, nothing left, container running), and one during
/// which the shim is killed with SIGKILL (nothing at the location; the restarted shim
/// removes the dead run's temporary file).
async fn large(instance: &str) {
    if let Some(why) = skip() {
        say(&format!("large checkpoint on {instance}: skipped: {why}"));
        return;
    }
    let bed = Bed::up(instance);
    let dirs = Dirs::new();
    let shim = shim(&bed, &dirs, "").await;
    let mut cri = cri(&shim.socket).await;
    let pod = pod(&mut cri, &bed, "big-pod", "ckpt-test").await;
    let (id, log) = container(&mut cri, &bed, &pod, "big", BIG, &[]).await;
    wait_for("1 GiB dirtied", Duration::from_secs(60), || {
        counts(&log).len() >= 2
    })
    .await;

    let full = dirs.archives().join("full.tar");
    let t = std::time::Instant::now();
    checkpoint(&mut cri, &id, &full, 120)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", shim.logs()));
    say(&format!(
        "{instance}: 1 GiB checkpoint through the shim {:?}, {} MiB, shim peak RSS {} MiB",
        t.elapsed(),
        std::fs::metadata(&full).unwrap().len() >> 20,
        shim.peak_rss_kib() >> 10
    ));
    std::fs::remove_file(&full).unwrap();

    let late = dirs.archives().join("late.tar");
    let t = std::time::Instant::now();
    let err = checkpoint(&mut cri, &id, &late, 1).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    say(&format!(
        "{instance}: timeout 1 s answered after {:?}: {}",
        t.elapsed(),
        err.message()
    ));
    assert!(!late.exists());
    assert_eq!(dot_files(&dirs.archives()), Vec::<String>::new());
    let n = counts(&log).len();
    wait_for(
        "the counter going on after the abort",
        Duration::from_secs(30),
        || counts(&log).len() > n + 2,
    )
    .await;
    assert_eq!(
        state(&mut cri, &id).await,
        ContainerState::ContainerRunning as i32
    );

    // containerd 2.x may still be winding down the cancelled call; the shim keeps the
    // container claimed (the next checkpoint is answered ABORTED) and kills any dump of it
    // until none is left, so the next checkpoint cannot trip over containerd's staging
    // directory.
    let staging = Path::new(bed.var("CONTAINERD_ROOT"))
        .join("io.containerd.grpc.v1.cri/containers")
        .join(&id)
        .join("ctrd-checkpoint");
    wait_for(
        "containerd's timed-out checkpoint to end",
        Duration::from_secs(120),
        || !staging.exists(),
    )
    .await;
    // The shim lets the container go 2 s after it last saw a dump of it.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGKILL mid-checkpoint.
    let killed = dirs.archives().join("killed.tar");
    let socket = shim.socket.clone();
    let (id2, killed2) = (id.clone(), killed.clone());
    let call = tokio::spawn(async move {
        let mut c = bed::cri(&socket).await;
        checkpoint(&mut c, &id2, &killed2, 120).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(call.await.unwrap().is_err());
    // Whatever the runtime still does for the dead call, the location stays empty.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!killed.exists());
    drop(shim);
    let shim = bed::shim(&bed, &dirs, "").await;
    wait_for(
        "the dead run's temporary file removed",
        Duration::from_secs(5),
        || dot_files(&dirs.archives()).is_empty(),
    )
    .await;
    let mut cri = bed::cri(&shim.socket).await;
    let n = counts(&log).len();
    wait_for(
        // containerd 2.x finishes the dead call's 1 GiB dump first (frozen meanwhile).
        "the counter going on after the kill",
        Duration::from_secs(60),
        || counts(&log).len() > n + 2,
    )
    .await;
    assert_eq!(
        state(&mut cri, &id).await,
        ContainerState::ContainerRunning as i32
    );

    // containerd 2.x goes on with the dead call's checkpoint on its own and stages it in a
    // directory per container that a second checkpoint would share: wait for it to finish
    // (a restarted shim cannot know about the runtime's orphaned work).
    wait_for(
        "containerd's orphaned checkpoint to finish",
        Duration::from_secs(120),
        || !staging.exists(),
    )
    .await;

    // The node-admin command does what kubelet's endpoint does.
    let out = dirs.archives().join("cli.tar");
    let run_cli = || {
        std::process::Command::new(ckpt_shim_tests::shim::binary())
            .args([
                "checkpoint",
                "ckpt-test/big-pod/big",
                "--timeout",
                "120",
                "--config",
            ])
            .arg(&shim.config)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap()
    };
    let mut cli = run_cli();
    // Known containerd 2.x race (see the closing note of the checkpoint issue): its own
    // clean-up of the aborted checkpoints above can still be removing files from the staging
    // directory the next checkpoint uses. Once more after it has settled.
    // The restarted shim also keeps the container claimed while it thaws what the killed
    // one left (ABORTED meanwhile).
    let busy = |stderr: &[u8]| {
        let e = String::from_utf8_lossy(stderr);
        e.contains("ctrd-checkpoint") || e.contains("already being checkpointed")
    };
    if !cli.status.success() && busy(&cli.stderr) {
        say("containerd's staging directory was still being cleaned up; trying once more");
        tokio::time::sleep(Duration::from_secs(15)).await;
        cli = run_cli();
    }
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(printed.starts_with(&out.display().to_string()), "{printed}");
    assert!(
        printed.contains(&format!("sha256:{}", sha256_file(&out))),
        "{printed}"
    );
    let verify = std::process::Command::new(ckpt_shim_tests::shim::binary())
        .args(["audit", "verify", "--config"])
        .arg(&shim.config)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    remove_pod(&mut cri, &pod).await;
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_timeout_and_kill_on_containerd_1_6() {
    large("1.6-lg").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_timeout_and_kill_on_containerd_2_1() {
    large("2.1-lg").await;
}

/// The counter's value, read inside the container.
/// The counter's value. The script rewrites /tmp/count each tick (truncate, then write), so a
/// read can land in between and see nothing: read again then.
async fn exec_count(cri: &mut Cri, id: &str) -> u64 {
    for _ in 0..20 {
        let out = cri
            .exec_sync(ckpt_shim::api::cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["cat".into(), "/tmp/count".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        if let Ok(n) = String::from_utf8_lossy(&out.stdout).trim().parse() {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    0
}

/// Across engines: an archive the shim made on containerd 1.6 (which has no CRI checkpoint)
/// is restored by containerd 2.1's own CRI restore (CreateContainer naming the archive),
/// and the process goes on counting from where it was instead of starting again.
#[tokio::test]
async fn shim_archive_from_1_6_restores_on_containerd_2_1() {
    if let Some(why) = skip() {
        say(&format!("round trip 1.6 -> 2.1: skipped: {why}"));
        return;
    }
    let node_a = Bed::up("1.6-rt");
    let dirs = Dirs::new();
    let shim = shim(&node_a, &dirs, "").await;
    let mut a = cri(&shim.socket).await;
    let pod_a = pod(&mut a, &node_a, "counter-pod", "ckpt-test").await;
    let (id, log) = container(&mut a, &node_a, &pod_a, "counter", COUNTER, &[]).await;
    wait_for("the counter reaching 30", Duration::from_secs(30), || {
        counts(&log).last().is_some_and(|n| *n >= 30)
    })
    .await;
    let archive = dirs.archives().join("roundtrip.tar");
    // A lower bound: the checkpoint holds a value at least this high.
    let at_checkpoint = exec_count(&mut a, &id).await;
    checkpoint(&mut a, &id, &archive, 60)
        .await
        .unwrap_or_else(|e| panic!("checkpoint on 1.6: {e:?}\n{}", shim.logs()));
    remove_pod(&mut a, &pod_a).await;

    let node_b = Bed::up("2.1-rt");
    let mut b = cri(&node_b.socket).await;
    let pod_b = pod(&mut b, &node_b, "restored-pod", "ckpt-test").await;
    let restored = b
        .create_container(ckpt_shim::api::cri::CreateContainerRequest {
            pod_sandbox_id: pod_b.id.clone(),
            config: Some(ckpt_shim::api::cri::ContainerConfig {
                metadata: Some(ckpt_shim::api::cri::ContainerMetadata {
                    name: "counter".into(),
                    attempt: 0,
                }),
                image: Some(ckpt_shim::api::cri::ImageSpec {
                    image: archive.display().to_string(),
                    ..Default::default()
                }),
                log_path: "counter.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(pod_b.config.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("containerd 2.1 CreateContainer from the shim's archive: {e:?}"))
        .into_inner()
        .container_id;
    b.start_container(ckpt_shim::api::cri::StartContainerRequest {
        container_id: restored.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("containerd 2.1 StartContainer of the restore: {e:?}"));
    let first = exec_count(&mut b, &restored).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = exec_count(&mut b, &restored).await;
    say(&format!(
        "round trip: counter {at_checkpoint} at the checkpoint on 1.6, {first} then {later} after restore on 2.1"
    ));
    assert!(
        first >= at_checkpoint,
        "restored process starts from {first}, checkpointed at {at_checkpoint}: a fresh start, not a restore"
    );
    assert!(
        later > first,
        "the restored counter goes on ({first} -> {later})"
    );
    remove_pod(&mut b, &pod_b).await;
}

/// A counter holding an established TCP connection to a listener in the same container
/// (host network, so the port is picked per run).
fn tcp_counter(port: u16) -> String {
    format!(
        "sleep 100000 | nc -l -p {port} > /dev/null & sleep 0.3; (while true; do echo ping; sleep 0.2; done) | nc 127.0.0.1 {port} & i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; done"
    )
}

/// CRIU options by annotation, with a real CRIU failure beside them: without
/// `tcp-established` CRIU refuses the established connection (INTERNAL with CRIU's reason
/// and its kept log, nothing at the location, the container running on); with the option
/// allowed the same container checkpoints and the archive holds the connection; an option
/// the node does not allow is PERMISSION_DENIED. Then a full disk: RESOURCE_EXHAUSTED and
/// nothing left.
#[tokio::test]
async fn criu_options_criu_failure_and_full_disk_on_containerd_1_6() {
    if let Some(why) = skip() {
        say(&format!("CRIU options: skipped: {why}"));
        return;
    }
    let bed = Bed::up("1.6-tcp");
    let dirs = Dirs::new();
    let shim = shim(&bed, &dirs, "allowed_criu_options = [\"tcp-established\"]").await;
    let mut cri = cri(&shim.socket).await;
    let pod = pod(&mut cri, &bed, "tcp-pod", "ckpt-test").await;
    let base = 20000 + (std::process::id() % 20000) as u16;
    let annotation = (
        ckpt_shim::checkpoint::policy::CRIU_OPTIONS_ANNOTATION,
        "tcp-established",
    );
    let (with, with_log) = container(
        &mut cri,
        &bed,
        &pod,
        "with",
        &tcp_counter(base),
        &[annotation],
    )
    .await;
    let (without, without_log) =
        container(&mut cri, &bed, &pod, "without", &tcp_counter(base + 1), &[]).await;
    wait_for("both counters", Duration::from_secs(10), || {
        counts(&with_log).len() >= 5 && counts(&without_log).len() >= 5
    })
    .await;

    // No option: CRIU's own refusal comes back.
    let refused = dirs.archives().join("without.tar");
    let e = checkpoint(&mut cri, &without, &refused, 60)
        .await
        .unwrap_err();
    say(&format!(
        "without tcp-established: {:?} {}",
        e.code(),
        e.message()
    ));
    assert_eq!(e.code(), Code::Internal, "{}", e.message());
    assert!(
        e.message().to_lowercase().contains("tcp"),
        "CRIU's reason: {}",
        e.message()
    );
    let kept = dirs.root.path().join("failed");
    assert!(
        std::fs::read_dir(&kept).map(|d| d.count()).unwrap_or(0) > 0,
        "the CRIU log is kept in {}",
        kept.display()
    );
    assert!(!refused.exists());
    assert!(dot_files(&dirs.archives()).is_empty());
    let n = counts(&without_log).len();
    wait_for(
        "the refused container going on",
        Duration::from_secs(5),
        || counts(&without_log).len() > n + 2,
    )
    .await;

    // The option, allowed: the connection is in the archive.
    let archive = dirs.archives().join("with.tar");
    checkpoint(&mut cri, &with, &archive, 60)
        .await
        .unwrap_or_else(|e| panic!("checkpoint with tcp-established: {e:?}\n{}", shim.logs()));
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs.archives().join("with.tar.json")).unwrap())
            .unwrap();
    assert_eq!(
        sidecar["criu_options"],
        serde_json::json!(["tcp-established"])
    );
    let out = std::process::Command::new(ckpt_shim_tests::shim::binary())
        .args(["inspect", "--sockets", "--format", "json"])
        .arg(&archive)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"ESTABLISHED\"") && text.contains(&format!("127.0.0.1:{base}")),
        "the established connection is in the checkpoint: {text}"
    );
    assert_eq!(
        state(&mut cri, &with).await,
        ContainerState::ContainerRunning as i32
    );

    // An option the node does not allow.
    let (locks, _) = container(
        &mut cri,
        &bed,
        &pod,
        "locks",
        "sleep 600",
        &[(
            ckpt_shim::checkpoint::policy::CRIU_OPTIONS_ANNOTATION,
            "file-locks",
        )],
    )
    .await;
    let e = checkpoint(&mut cri, &locks, &dirs.archives().join("locks.tar"), 60)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());

    // A full disk: a 256 KiB tmpfs below the allowed directory.
    let small = dirs.archives().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success());
    let e = checkpoint(&mut cri, &with, &small.join("full.tar"), 60)
        .await
        .unwrap_err();
    say(&format!("full disk: {:?} {}", e.code(), e.message()));
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let _ = std::process::Command::new("umount").arg(&small).status();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(left.is_empty(), "nothing left on the full disk: {left:?}");
    assert_eq!(
        state(&mut cri, &with).await,
        ContainerState::ContainerRunning as i32
    );
    remove_pod(&mut cri, &pod).await;
}
