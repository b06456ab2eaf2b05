//! Restore through the shim on the real test bed: a container whose image is a checkpoint
//! archive comes back with its process state, on containerd 1.6 and 1.7 (which have no
//! restore: the shim's runc wrapper does it) and 2.1 (its own restore, with the shim's
//! checks around it). Then every way a restore must be refused. Root only; skipped with a
//! printed reason otherwise.

mod hostile;

use std::path::PathBuf;
use std::time::Duration;

use ckpt_shim::api::cri::image_service_client::ImageServiceClient;
use ckpt_shim::api::cri::*;
use ckpt_shim_tests::bed::{self, *};
use tonic::Code;

const COUNTER: &str = "echo kept > /kept.txt; rm -f /bin/pidof; i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; done";

/// The wrapper next to the shim binary the tests run.
fn wrapper() -> PathBuf {
    ckpt_shim_tests::shim::binary().with_file_name("ckpt-shim-runc")
}

fn restore_section(dirs: &Dirs, extra: &str) -> String {
    format!(
        "[restore]\nallowed_dirs = [\"{}\"]\nstaging_dir = \"{}\"\n{extra}\n",
        dirs.archives().display(),
        dirs.root.path().join("restore").display()
    )
}

fn staged(dirs: &Dirs) -> Vec<String> {
    std::fs::read_dir(dirs.root.path().join("restore"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn request(pod: &Pod, name: &str, image: &str) -> CreateContainerRequest {
    create_request(pod, name, image, &[], &[])
}

async fn exec(cri: &mut Cri, id: &str, cmd: &[&str]) -> (i32, String) {
    let out = cri
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e:?}"))
        .into_inner();
    (
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

/// The counter's value. The script rewrites /tmp/count each tick (truncate, then write), so a
/// read can land in between and see nothing: read again then.
async fn count(cri: &mut Cri, id: &str) -> u64 {
    for _ in 0..20 {
        if let Ok(n) = exec(cri, id, &["cat", "/tmp/count"]).await.1.parse() {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    0
}

async fn containers_in(cri: &mut Cri, pod: &Pod) -> usize {
    cri.list_containers(ListContainersRequest {
        filter: Some(ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        }),
    })
    .await
    .unwrap()
    .into_inner()
    .containers
    .len()
}

/// Runs a counter, checkpoints it through the shim and removes its pod; returns the
/// archive and the counter's value at the checkpoint (a lower bound).
async fn checkpointed(
    cri: &mut Cri,
    bed: &Bed,
    dirs: &Dirs,
    shim: &ckpt_shim_tests::shim::Shim,
    name: &str,
) -> (PathBuf, u64) {
    let pod_a = pod(cri, bed, "counter-pod", "ckpt-test").await;
    let (id, log) = container(cri, bed, &pod_a, "counter", COUNTER, &[]).await;
    wait_for("the counter reaching 20", Duration::from_secs(30), || {
        counts(&log).last().is_some_and(|n| *n >= 20)
    })
    .await;
    let archive = dirs.archives().join(name);
    let at = count(cri, &id).await;
    checkpoint(cri, &id, &archive, 60)
        .await
        .unwrap_or_else(|e| panic!("checkpoint: {e:?}\n{}", shim.logs()));
    remove_pod(cri, &pod_a).await;
    (archive, at)
}

/// Checkpoint, then restore into a new pod through the shim; the process goes on.
async fn round_trip(instance: &str, checkpoint_config: &str, restore_config: &str, native: bool) {
    if let Some(why) = skip() {
        say(&format!("restore on {instance}: skipped: {why}"));
        return;
    }
    let w = wrapper();
    let bed = Bed::up_with(
        instance,
        &[("CKPT_TESTBED_RUNC_WRAPPER", w.to_str().unwrap())],
    );
    let dirs = Dirs::new();
    let config = format!(
        "{checkpoint_config}\n{}",
        restore_section(&dirs, restore_config)
    );
    let shim = shim(&bed, &dirs, &config).await;
    let mut cri = cri(&shim.socket).await;
    if !native {
        // Checked at start, so an admin learns of a missing setting before any restore.
        wait_for(
            "the start-up check of the wrapper settings",
            Duration::from_secs(10),
            || shim.logs().contains("restores ready"),
        )
        .await;
    }
    let (archive, at) = checkpointed(&mut cri, &bed, &dirs, &shim, "counter.tar").await;

    let pod_b = pod(&mut cri, &bed, "restored-pod", "ckpt-test").await;
    let t = std::time::Instant::now();
    let id = cri
        .create_container(request(&pod_b, "counter", &archive.display().to_string()))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer of the archive: {e:?}\n{}", shim.logs()))
        .into_inner()
        .container_id;
    let created = t.elapsed();
    cri.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer of the restore: {e:?}\n{}", shim.logs()));
    say(&format!(
        "{instance}: restore through the shim: CreateContainer {created:?}, both {:?}",
        t.elapsed()
    ));
    assert_eq!(
        state(&mut cri, &id).await,
        ContainerState::ContainerRunning as i32
    );
    let first = count(&mut cri, &id).await;
    let log = pod_b.log_dir.join("counter.log");
    wait_for(
        "the restored counter's output in the new log",
        Duration::from_secs(10),
        || !counts(&log).is_empty(),
    )
    .await;
    let logged = counts(&log);
    say(&format!(
        "{instance}: counter {at} at the checkpoint; {first} after restore; new log starts at {}",
        logged[0]
    ));
    assert!(
        first >= at,
        "restored at {first} < {at}: a fresh start, not a restore"
    );
    // The wrapper's restore writes only what the process prints from now on; containerd's
    // own restore first copies the checkpointed container's log. Either way the count never
    // starts again at 1.
    if !native {
        assert!(
            logged[0] >= at,
            "the new log continues the count: {logged:?}"
        );
    }
    assert!(
        logged.iter().skip(1).all(|n| *n != 1),
        "the count started again: {logged:?}"
    );
    // Files: written before the checkpoint are there, deleted ones are gone.
    assert_eq!(
        exec(&mut cri, &id, &["cat", "/kept.txt"]).await,
        (0, "kept".into())
    );
    if !native {
        // containerd 2.1's own restore applies rootfs-diff.tar but ignores deleted.files (the
        // layout CRI-O and the shim write), so there the deleted file comes back.
        assert_eq!(
            exec(&mut cri, &id, &["test", "-e", "/bin/pidof"]).await.0,
            1
        );
    }
    // containerd restarts: the container stays RUNNING and keeps counting.
    let out = std::process::Command::new(script())
        .args(["restart", &bed.instance])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the runtime after restart", Duration::from_secs(20), || {
        bed.socket.exists()
    })
    .await;
    let mut direct = bed::cri(&bed.socket).await;
    let mut running = false;
    for _ in 0..100 {
        if let Ok(s) = direct
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
        {
            running =
                s.into_inner().status.unwrap().state == ContainerState::ContainerRunning as i32;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running, "RUNNING after a containerd restart");
    let later = count(&mut cri, &id).await;
    assert!(
        later > first,
        "still counting after the restart ({first} -> {later})"
    );

    if !native {
        assert_eq!(
            staged(&dirs).len(),
            1,
            "one staged checkpoint while the container lives"
        );
    }
    cri.stop_container(StopContainerRequest {
        container_id: id.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    cri.remove_container(RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(
        staged(&dirs).is_empty(),
        "RemoveContainer removes the staged checkpoint: {:?}",
        staged(&dirs)
    );
    remove_pod(&mut cri, &pod_b).await;

    let audit = std::fs::read_to_string(dirs.audit()).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "restore");
    assert_eq!(last["result"], "succeeded", "{last}");
    assert_eq!(last["container_id"], id);
    assert_eq!(last["engine"], if native { "native" } else { "wrapper" });
    assert_eq!(last["size"], std::fs::metadata(&archive).unwrap().len());
    assert!(last["sha256"].as_str().unwrap().len() == 64);
}

#[tokio::test]
async fn checkpoint_and_restore_on_containerd_1_6() {
    round_trip("1.6-rs", "", "", false).await;
}

#[tokio::test]
async fn checkpoint_and_restore_on_containerd_1_7() {
    round_trip("1.7-rs", "", "", false).await;
}

#[tokio::test]
async fn checkpoint_and_restore_on_containerd_2_1() {
    // containerd's own archive, restored by the wrapper (auto picks it when configured).
    round_trip("2.1-rs", "", "", false).await;
}

/// containerd 2.1's own restore, with the shim's checks and audit around it: the shim's
/// archive (its base image recorded as NAME@DIGEST, which 2.1 can find).
#[tokio::test]
async fn native_restore_on_containerd_2_1() {
    round_trip("2.1-rn", "mode = \"emulate\"", "mode = \"native\"", true).await;
}

/// Every rule a restore must fail closed on, each with a crafted archive: a clear status,
/// an audit record, and nothing left behind (no container, no staged files, nothing written
/// outside).
#[tokio::test]
async fn refusals_fail_closed_on_containerd_1_6() {
    use hostile::Extra;
    use tar::EntryType as T;
    if let Some(why) = skip() {
        say(&format!("restore refusals: skipped: {why}"));
        return;
    }
    let w = wrapper();
    let bed = Bed::up_with(
        "1.6-rx",
        &[("CKPT_TESTBED_RUNC_WRAPPER", w.to_str().unwrap())],
    );
    let dirs = Dirs::new();
    let config = restore_section(&dirs, "max_member_bytes = 104857600\nwatchdog_seconds = 5");
    let shim = shim(&bed, &dirs, &config).await;
    let mut cri = cri(&shim.socket).await;
    let (good, _) = checkpointed(&mut cri, &bed, &dirs, &shim, "good.tar").await;
    let members = hostile::members(&good);
    let pod_b = pod(&mut cri, &bed, "restored-pod", "ckpt-test").await;
    let outside = dirs.root.path().join("escaped");

    let craft = |name: &str, edit: &hostile::Edit<'_>, extra: &[Extra<'_>]| {
        let path = dirs.archives().join(name);
        hostile::write(&path, &members, edit, extra);
        path
    };
    let keep = |_: &str, d: &[u8]| Some(d.to_vec());
    let with_diff = |diff: Vec<u8>| {
        move |n: &str, d: &[u8]| {
            Some(if n == "rootfs-diff.tar" {
                diff.clone()
            } else {
                d.to_vec()
            })
        }
    };

    let elsewhere = dirs.root.path().join("elsewhere.tar");
    std::fs::copy(&good, &elsewhere).unwrap();
    let tampered = dirs.archives().join("tampered.tar");
    std::fs::copy(&good, &tampered).unwrap();
    let mut sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs.archives().join("good.tar.json")).unwrap())
            .unwrap();
    sidecar["sha256"] = "0".repeat(64).into();
    std::fs::write(
        dirs.archives().join("tampered.tar.json"),
        sidecar.to_string(),
    )
    .unwrap();

    let cases: Vec<(&str, PathBuf, Code, &str)> = vec![
        (
            "outside the allowed directories",
            elsewhere,
            Code::PermissionDenied,
            "outside the directories",
        ),
        (
            "a missing archive",
            dirs.archives().join("nothing.tar"),
            Code::NotFound,
            "nothing.tar",
        ),
        (
            "a digest that differs from the sidecar",
            tampered,
            Code::PermissionDenied,
            "does not match its sidecar",
        ),
        (
            "tar-slip",
            craft("slip.tar", &keep, &[Extra::File(b"../../escaped", b"x")]),
            Code::InvalidArgument,
            "unsafe member name",
        ),
        (
            "an absolute member",
            craft("abs.tar", &keep, &[Extra::File(b"/var/tmp/escaped", b"x")]),
            Code::InvalidArgument,
            "unsafe member name",
        ),
        (
            "a symlink member",
            craft(
                "link.tar",
                &keep,
                &[Extra::Symlink(b"checkpoint/x", b"/etc/shadow")],
            ),
            Code::InvalidArgument,
            "only files and directories",
        ),
        (
            "a member above the size limit",
            craft(
                "huge.tar",
                &keep,
                &[Extra::Huge(b"checkpoint/pages-9.img", 1 << 40)],
            ),
            Code::InvalidArgument,
            "above the limit",
        ),
        (
            "config.dump that is not JSON",
            craft(
                "json.tar",
                &|n, d| {
                    Some(if n == "config.dump" {
                        b"{not json".to_vec()
                    } else {
                        d.to_vec()
                    })
                },
                &[],
            ),
            Code::InvalidArgument,
            "not valid JSON",
        ),
        (
            "no CRIU inventory",
            craft(
                "noinv.tar",
                &|n, d| (n != "checkpoint/inventory.img").then(|| d.to_vec()),
                &[],
            ),
            Code::InvalidArgument,
            "inventory.img",
        ),
        (
            "a block device in the rootfs diff",
            craft(
                "dev.tar",
                &with_diff(hostile::rootfs_diff(&[(b"dev/sda", T::Block, b"", (8, 0))])),
                &[],
            ),
            Code::InvalidArgument,
            "block device 8:0",
        ),
        (
            "a hard link out of the rootfs",
            craft(
                "hard.tar",
                &with_diff(hostile::rootfs_diff(&[(
                    b"etc/x",
                    T::Link,
                    b"../../../etc/shadow",
                    (0, 0),
                )])),
                &[],
            ),
            Code::InvalidArgument,
            "points outside",
        ),
        (
            "a write through a symlink the diff creates",
            craft(
                "through.tar",
                &with_diff(hostile::rootfs_diff(&[
                    (b"up", T::Symlink, b"/", (0, 0)),
                    (b"up/escaped", T::Regular, b"", (0, 0)),
                ])),
                &[],
            ),
            Code::InvalidArgument,
            "through the symlink",
        ),
        (
            "a bind mount the request lacks",
            craft(
                "mount.tar",
                &|n, d| {
                    Some(if n == "spec.dump" {
                        let mut spec: serde_json::Value = serde_json::from_slice(d).unwrap();
                        spec["mounts"]
                            .as_array_mut()
                            .unwrap()
                            .push(serde_json::json!({
                                "destination": "/data", "type": "bind", "source": "/srv/data",
                                "options": ["rbind", "rw"]
                            }));
                        serde_json::to_vec(&spec).unwrap()
                    } else {
                        d.to_vec()
                    })
                },
                &[],
            ),
            Code::InvalidArgument,
            "bind mounts the request does not have: /data",
        ),
        (
            "deleted.files out of the rootfs",
            craft(
                "del.tar",
                &|n, d| {
                    Some(if n == "deleted.files" {
                        br#"["/../../etc/passwd"]"#.to_vec()
                    } else {
                        d.to_vec()
                    })
                },
                &[],
            ),
            Code::InvalidArgument,
            "outside the rootfs",
        ),
    ];
    for (what, archive, code, needle) in cases {
        let e = cri
            .create_container(request(&pod_b, "counter", &archive.display().to_string()))
            .await
            .expect_err(what);
        say(&format!("refused {what}: {:?} {}", e.code(), e.message()));
        assert_eq!(e.code(), code, "{what}: {}", e.message());
        assert!(e.message().contains(needle), "{what}: {}", e.message());
        assert_eq!(
            containers_in(&mut cri, &pod_b).await,
            0,
            "{what}: no container"
        );
        assert!(
            staged(&dirs).is_empty(),
            "{what}: nothing staged: {:?}",
            staged(&dirs)
        );
        assert!(!outside.exists(), "{what}: nothing written outside");
        let audit = std::fs::read_to_string(dirs.audit()).unwrap();
        let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
        assert_eq!(last["action"], "restore", "{what}");
        assert!(
            matches!(last["result"].as_str(), Some("denied" | "failed")),
            "{what}: {last}"
        );
        assert_eq!(last["code"], format!("{code:?}"), "{what}");
    }

    // Another namespace.
    let pod_other = pod(&mut cri, &bed, "other-pod", "other-ns").await;
    let e = cri
        .create_container(request(&pod_other, "counter", &good.display().to_string()))
        .await
        .expect_err("cross-namespace");
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());
    assert!(e.message().contains("namespace"), "{}", e.message());
    assert_eq!(containers_in(&mut cri, &pod_other).await, 0);

    // The shim's own annotation, set by a caller.
    let mut r = request(&pod_b, "counter", bed.var("BUSYBOX_IMAGE"));
    r.config
        .as_mut()
        .unwrap()
        .annotations
        .insert("io.ckpt-shim.restore-from".into(), "/".into());
    let e = cri
        .create_container(r)
        .await
        .expect_err("reserved annotation");
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());

    // Broken CRIU images pass the archive checks (they are well-formed files) and fail in
    // CRIU: a pages file cut in half fails at once; an empty one makes CRIU's restorer spin
    // until the watchdog (5 s here) kills it. Either way StartContainer fails with the
    // reason, the container can be removed, and nothing stays behind.
    for (what, cut) in [
        ("half a pages file", None),
        ("an empty pages file", Some(0usize)),
    ] {
        let name = format!("cut-{}.tar", cut.map_or("half".into(), |c| c.to_string()));
        let truncated = craft(
            &name,
            &|n, d| {
                let keep = cut.unwrap_or(d.len() / 2);
                Some(if n.starts_with("checkpoint/pages-") {
                    d[..keep].to_vec()
                } else {
                    d.to_vec()
                })
            },
            &[],
        );
        let id = cri
            .create_container(request(&pod_b, "counter", &truncated.display().to_string()))
            .await
            .unwrap_or_else(|e| panic!("{what} passes the archive checks: {e:?}"))
            .into_inner()
            .container_id;
        let t = std::time::Instant::now();
        let e = cri
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .expect_err(what);
        say(&format!(
            "{what}: StartContainer failed after {:?}: {}",
            t.elapsed(),
            e.message()
        ));
        assert!(
            e.message().contains("restore of container"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("restore log kept at"),
            "{}",
            e.message()
        );
        if cut == Some(0) {
            assert!(e.message().contains("watchdog"), "{}", e.message());
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "bounded by the watchdog"
        );
        assert_ne!(
            state(&mut cri, &id).await,
            ContainerState::ContainerRunning as i32
        );
        cri.remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: the failed restore can be removed: {e:?}"));
        assert!(
            staged(&dirs).is_empty(),
            "{what}: nothing staged after remove: {:?}\n{}",
            staged(&dirs),
            shim.logs()
        );
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        assert!(
            !mounts.contains(dirs.root.path().to_str().unwrap()),
            "{what}: no mount left: {mounts}"
        );
        let criu = std::process::Command::new("pgrep")
            .args(["-x", "criu"])
            .output()
            .unwrap();
        assert!(
            criu.stdout.is_empty(),
            "{what}: no CRIU left running: {}",
            String::from_utf8_lossy(&criu.stdout)
        );
        let audit = std::fs::read_to_string(dirs.audit()).unwrap();
        let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
        assert_eq!(last["result"], "failed", "{last}");
        assert_eq!(last["container_id"], id);
    }

    // The shim is still serving.
    assert_eq!(containers_in(&mut cri, &pod_b).await, 0);
    remove_pod(&mut cri, &pod_b).await;
    remove_pod(&mut cri, &pod_other).await;
}

/// A node whose containerd is not set up for the wrapper: restores are refused with the
/// setting to add, and never start fresh.
#[tokio::test]
async fn runtime_without_wrapper_settings_is_refused() {
    if let Some(why) = skip() {
        say(&format!("restore preconditions: skipped: {why}"));
        return;
    }
    let w = wrapper();
    for (instance, vars, needle) in [
        ("1.6-nw", vec![], "BinaryName"),
        (
            "1.6-na",
            vec![
                ("CKPT_TESTBED_RUNC_WRAPPER", w.to_str().unwrap()),
                ("CKPT_TESTBED_ANNOTATIONS", "[\"org.criu.*\"]"),
            ],
            "container_annotations",
        ),
    ] {
        let bed = Bed::up_with(instance, &vars);
        let dirs = Dirs::new();
        let shim = shim(&bed, &dirs, &restore_section(&dirs, "")).await;
        let mut cri = cri(&shim.socket).await;
        let (archive, _) = checkpointed(&mut cri, &bed, &dirs, &shim, "a.tar").await;
        let pod_b = pod(&mut cri, &bed, "restored-pod", "ckpt-test").await;
        let e = cri
            .create_container(request(&pod_b, "counter", &archive.display().to_string()))
            .await
            .expect_err("no restore without the wrapper settings");
        say(&format!("{instance}: {:?} {}", e.code(), e.message()));
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(e.message().contains(needle), "{}", e.message());
        assert!(
            shim.logs()
                .contains("restores through the wrapper are not possible"),
            "warned at start"
        );
        assert_eq!(containers_in(&mut cri, &pod_b).await, 0, "nothing created");
        assert!(staged(&dirs).is_empty());
        remove_pod(&mut cri, &pod_b).await;
    }
}

/// Restores one container from `archive` into a new pod through `cri` and checks that it
/// goes on counting from at least `at`.
async fn restore_and_check(
    cri: &mut Cri,
    bed: &Bed,
    archive: &std::path::Path,
    at: u64,
    what: &str,
) {
    let pod_b = pod(cri, bed, "restored-pod", "ckpt-test").await;
    let id = cri
        .create_container(request(&pod_b, "counter", &archive.display().to_string()))
        .await
        .unwrap_or_else(|e| panic!("{what}: CreateContainer: {e:?}"))
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: StartContainer: {e:?}"));
    let first = count(cri, &id).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = count(cri, &id).await;
    say(&format!(
        "{what}: {at} at the checkpoint, {first} then {later} after restore"
    ));
    assert!(first >= at, "{what}: a fresh start ({first} < {at})");
    assert!(later > first, "{what}: the counter goes on");
    assert_eq!(
        exec(cri, &id, &["test", "-e", "/bin/pidof"]).await.0,
        1,
        "{what}: deleted file stays deleted"
    );
    assert_eq!(
        exec(cri, &id, &["cat", "/kept.txt"]).await,
        (0, "kept".into()),
        "{what}"
    );
    remove_pod(cri, &pod_b).await;
}

/// Across engines, through the shim: containerd 2.1's own archive (gzip layer with
/// whiteouts) restored on 1.6, and the shim's 1.6 archive (plain diff + deleted.files)
/// restored on 2.1.
#[tokio::test]
async fn archives_cross_engines_through_the_shim() {
    if let Some(why) = skip() {
        say(&format!("cross-engine restore: skipped: {why}"));
        return;
    }
    let w = wrapper();
    let vars = [("CKPT_TESTBED_RUNC_WRAPPER", w.to_str().unwrap())];
    let dirs = Dirs::new();
    let (node_16, node_21) = (Bed::up_with("1.6-x", &vars), Bed::up_with("2.1-x", &vars));
    let dirs_21 = Dirs::new();
    let restore_21 = restore_section(&dirs_21, "").replace(
        &format!("allowed_dirs = [\"{}\"]", dirs_21.archives().display()),
        &format!("allowed_dirs = [\"{}\"]", dirs.archives().display()),
    );
    let shim_16 = shim(&node_16, &dirs, &restore_section(&dirs, "")).await;
    let shim_21 = shim(&node_21, &dirs_21, &restore_21).await;
    let (mut a, mut b) = (cri(&shim_16.socket).await, cri(&shim_21.socket).await);

    let (from_21, at_21) = checkpointed(&mut b, &node_21, &dirs_21, &shim_21, "from-2.1.tar").await;
    let moved = dirs.archives().join("from-2.1.tar");
    std::fs::copy(&from_21, &moved).unwrap();
    restore_and_check(
        &mut a,
        &node_16,
        &moved,
        at_21,
        "containerd 2.1 archive on 1.6",
    )
    .await;
    // Its pod went with RemovePodSandbox alone (no RemoveContainer): the staged checkpoint
    // is swept before the next restore request, even one that is refused.
    assert_eq!(
        staged(&dirs).len(),
        1,
        "staged while the shim has not looked"
    );
    let pod_x = pod(&mut a, &node_16, "sweep-pod", "ckpt-test").await;
    let missing = dirs.archives().join("missing.tar").display().to_string();
    let e = a
        .create_container(request(&pod_x, "counter", &missing))
        .await
        .expect_err("a missing archive");
    assert_eq!(e.code(), Code::NotFound);
    wait_for("the sweep", Duration::from_secs(5), || {
        staged(&dirs).is_empty()
    })
    .await;
    remove_pod(&mut a, &pod_x).await;

    let (from_16, at_16) = checkpointed(&mut a, &node_16, &dirs, &shim_16, "from-1.6.tar").await;
    restore_and_check(&mut b, &node_21, &from_16, at_16, "shim 1.6 archive on 2.1").await;
}

/// Migration: node A checkpoints through its shim, `ckpt-shim image build --push` sends the
/// checkpoint to the registry, node B pulls it through its shim as kubelet would and creates
/// a container naming it (by id, as kubelet does): the process goes on there.
#[tokio::test]
async fn migration_through_a_registry() {
    if let Some(why) = skip() {
        say(&format!("migration: skipped: {why}"));
        return;
    }
    let w = wrapper();
    let vars = [("CKPT_TESTBED_RUNC_WRAPPER", w.to_str().unwrap())];
    let (node_a, node_b) = (Bed::up_with("1.6-ma", &vars), Bed::up_with("1.7-mb", &vars));
    let (dirs_a, dirs_b) = (Dirs::new(), Dirs::new());
    let shim_a = shim(&node_a, &dirs_a, &restore_section(&dirs_a, "")).await;
    let shim_b = shim(&node_b, &dirs_b, &restore_section(&dirs_b, "")).await;
    let mut a = cri(&shim_a.socket).await;
    let (archive, at) = checkpointed(&mut a, &node_a, &dirs_a, &shim_a, "migrate.tar").await;

    let name = format!(
        "127.0.0.1:5000/ckpt-shim-test/migrate:{}",
        std::process::id()
    );
    let out = std::process::Command::new(ckpt_shim_tests::shim::binary())
        .args(["image", "build"])
        .arg(&archive)
        .args([&name, "--push", "--plain-http"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "image build --push: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut images =
        ImageServiceClient::new(ckpt_shim_tests::raw::channel(&shim_b.socket).await.unwrap());
    let pulled = images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("PullImage of the checkpoint image on node B: {e:?}"))
        .into_inner()
        .image_ref;
    let mut b = cri(&shim_b.socket).await;
    let pod_b = pod(&mut b, &node_b, "migrated-pod", "ckpt-test").await;
    let t = std::time::Instant::now();
    let id = b
        .create_container(request(&pod_b, "counter", &pulled))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateContainer of the checkpoint image on node B: {e:?}\n{}",
                shim_b.logs()
            )
        })
        .into_inner()
        .container_id;
    b.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer on node B: {e:?}\n{}", shim_b.logs()));
    let first = count(&mut b, &id).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = count(&mut b, &id).await;
    say(&format!(
        "migration 1.6 -> registry -> 1.7: {at} at the checkpoint on A, {first} then {later} on B ({:?} for create + start)",
        t.elapsed()
    ));
    assert!(
        first >= at && later > first,
        "the process goes on on node B"
    );
    assert_eq!(
        exec(&mut b, &id, &["cat", "/kept.txt"]).await,
        (0, "kept".into())
    );
    assert_eq!(exec(&mut b, &id, &["test", "-e", "/bin/pidof"]).await.0, 1);
    let audit = std::fs::read_to_string(dirs_b.audit()).unwrap();
    let last: serde_json::Value = serde_json::from_str(audit.lines().last().unwrap()).unwrap();
    assert_eq!(last["result"], "succeeded", "{last}");
    assert!(
        last["location"].as_str().unwrap().starts_with(&name),
        "{last}"
    );
    // An ordinary image is not taken for a checkpoint: a plain container starts as usual.
    let (plain, _) = container(&mut b, &node_b, &pod_b, "plain", "sleep 600", &[]).await;
    assert_eq!(
        state(&mut b, &plain).await,
        ContainerState::ContainerRunning as i32
    );
    remove_pod(&mut b, &pod_b).await;
}

/// The checkpoint-restore-operator's convention (restore.operator_annotations): the pod's
/// `restore.criu.org/checkpoint-path.<container>` annotation names the archive, the
/// container names an ordinary image. The same confinement applies.
#[tokio::test]
async fn operator_sandbox_annotation_restores() {
    if let Some(why) = skip() {
        say(&format!("operator annotation: skipped: {why}"));
        return;
    }
    let w = wrapper();
    let bed = Bed::up_with(
        "1.6-op",
        &[("CKPT_TESTBED_RUNC_WRAPPER", w.to_str().unwrap())],
    );
    let dirs = Dirs::new();
    let shim = shim(
        &bed,
        &dirs,
        &restore_section(&dirs, "operator_annotations = true"),
    )
    .await;
    let mut cri = cri(&shim.socket).await;
    let (archive, at) = checkpointed(&mut cri, &bed, &dirs, &shim, "op.tar").await;
    let outside = dirs.root.path().join("outside.tar");
    std::fs::copy(&archive, &outside).unwrap();

    for (path, ok) in [(outside, false), (archive, true)] {
        let mut p = pod(&mut cri, &bed, "annotated-pod", "ckpt-test").await;
        // The annotation is the sandbox's: a new sandbox carries it.
        remove_pod(&mut cri, &p).await;
        p.config.annotations.insert(
            "restore.criu.org/checkpoint-path.counter".into(),
            path.display().to_string(),
        );
        p.id = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(p.config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let created = cri
            .create_container(request(&p, "counter", bed.var("BUSYBOX_IMAGE")))
            .await;
        if !ok {
            let e = created
                .expect_err("an annotation naming an archive outside the allowed directories");
            assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());
            remove_pod(&mut cri, &p).await;
            continue;
        }
        let id = created
            .unwrap_or_else(|e| {
                panic!(
                    "CreateContainer with the operator annotation: {e:?}\n{}",
                    shim.logs()
                )
            })
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
        let now = count(&mut cri, &id).await;
        say(&format!(
            "operator annotation: {at} at the checkpoint, {now} after restore"
        ));
        assert!(now >= at, "restored, not started fresh");
        // Another container of that pod with another name is an ordinary container.
        let (plain, _) = container(&mut cri, &bed, &p, "sidecar", "sleep 600", &[]).await;
        assert_eq!(
            state(&mut cri, &plain).await,
            ContainerState::ContainerRunning as i32
        );
        remove_pod(&mut cri, &p).await;
    }
}
