//! containerd is killed while the shim serves: calls through the shim fail UNAVAILABLE at
//! once, and when containerd is back the same shim process serves again and the pod started
//! before is still there, running.

use std::path::Path;
use std::time::{Duration, Instant};

use ckpt_shim::api::cri;
use ckpt_shim_tests::kubelet::{self, counter_container, host_network_pod, unique, Kubelet};

use crate::{retry, Node};
use ckpt_shim_tests::testbed::say;

/// A call through the shim while containerd is gone: UNAVAILABLE, quickly, although the
/// call's own deadline is 30 s.
async fn expect_unavailable(k: &mut Kubelet, what: &str) {
    let started = Instant::now();
    let err = match what {
        "Version" => k.version().await.map(|_| ()),
        "ListContainers" => k.list_containers(None).await.map(|_| ()),
        _ => k.status().await.map(|_| ()),
    }
    .expect_err("containerd is down: the call must fail");
    let status = err
        .downcast_ref::<tonic::Status>()
        .unwrap_or_else(|| panic!("{what}: not a gRPC status: {err:#}"));
    assert_eq!(
        status.code(),
        tonic::Code::Unavailable,
        "{what}: {status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{what}: UNAVAILABLE took {:?}",
        started.elapsed()
    );
}

/// The container's init pid, from runc's state under the test bed's private runc root.
fn container_pid(instance: &ckpt_shim_tests::testbed::Instance, id: &str) -> u32 {
    let state = std::path::Path::new(instance.get("RUNC_ROOT"))
        .join(id)
        .join("state.json");
    let text =
        std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["init_process_pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no init_process_pid in {}", state.display())) as u32
}

async fn containerd_killed(version: &str) {
    let test = format!("containerd killed {version}");
    let t0 = Instant::now();
    let Some(node) = Node::start(version, &test).await else {
        return;
    };
    let instance = node.instance();
    let mut k = node.via_shim();
    let uid = unique("uid");
    let run = unique("e2e-killed");
    let pod_config = host_network_pod(
        "survivor",
        "ckpt-shim-e2e",
        &uid,
        Path::new(instance.get("POD_LOG_DIR")),
        &instance.cgroup_parent(&uid),
        &run,
    );
    let pod = k
        .run_counter_pod(
            &pod_config,
            &counter_container("counter", instance.get("BUSYBOX_IMAGE")),
        )
        .await
        .unwrap_or_else(|e| panic!("{test}: {e:#}"));
    kubelet::wait_counter(&pod.log_path, 2, Duration::from_secs(10))
        .await
        .unwrap();

    instance.kill_containerd().unwrap();
    let killed_at = Instant::now();
    for what in ["Version", "ListContainers", "Status"] {
        expect_unavailable(&mut k, what).await;
    }
    // The container itself runs on (its shim holds it), but its CRI log does not grow:
    // containerd, not the shim, copies the output into the log file.
    let count_file = format!(
        "/proc/{}/root/tmp/count",
        container_pid(instance, &pod.container_id)
    );
    // The loop rewrites the file (truncate, then write): a read may see it empty, so the
    // unreadable moments are skipped rather than taken as 0.
    let read_count = || -> Option<u64> {
        std::fs::read_to_string(&count_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match (first, read_count()) {
            (None, now) => first = now,
            (Some(a), Some(b)) if b > a => break,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "the counter does not go on while containerd is down: {count_file} stays at {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // `testbed restart` starts containerd again on the same dirs, containers kept. (It
    // blocks this test's thread for a moment; nothing else runs on it.)
    instance
        .restart()
        .unwrap_or_else(|e| panic!("{test}: {e:#}"));
    let down_for = killed_at.elapsed();

    // containerd answers directly first (its CRI plugin may need a moment after the socket
    // is up); then the shim must serve on its own, no restart, first try.
    let mut direct = node.direct().await;
    retry(Duration::from_secs(10), || {
        let mut d = direct.clone();
        async move { d.list_containers(None).await.map(|_| ()) }
    })
    .await
    .expect("containerd serves CRI after the restart");
    k.version()
        .await
        .expect("the shim serves again once containerd is back");
    let status = k
        .container_status(&pod.container_id)
        .await
        .expect("ContainerStatus through the shim after the restart");
    assert_eq!(
        status.state,
        cri::ContainerState::ContainerRunning as i32,
        "the container outlived containerd: {status:?}"
    );
    let listed = k.pod_containers(&pod.pod_id).await.unwrap();
    assert!(
        listed.len() == 1
            && listed[0].id == pod.container_id
            && listed[0].state == cri::ContainerState::ContainerRunning as i32,
        "{listed:?}"
    );
    let exec = k
        .exec_sync(&pod.container_id, &["cat", "/tmp/marker"], 10)
        .await
        .unwrap();
    assert_eq!(exec.stdout, b"ready\n", "{exec:?}");
    let before = kubelet::counter_values(&kubelet::read_cri_log(&pod.log_path).unwrap()).len();
    kubelet::wait_counter(&pod.log_path, before + 2, Duration::from_secs(10))
        .await
        .expect("the counter still goes on");

    k.remove_pod_fully(&pod.pod_id).await.unwrap();
    assert!(direct.list_pods(None).await.unwrap().is_empty());
    let log = node.shim().logs();
    assert!(
        log.contains("runtime connection"),
        "the shim logs losing containerd:\n{log}"
    );
    assert!(
        log.contains("\"grpc_status\":\"14\""),
        "the UNAVAILABLE answers are in the call log:\n{log}"
    );
    node.finish().await;
    say(&format!(
        "{test}: containerd down for {:.2} s (kill to restarted), whole test {:.2} s",
        down_for.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    ));
}

#[tokio::test]
async fn containerd_killed_1_6() {
    containerd_killed("1.6").await;
}

#[tokio::test]
async fn containerd_killed_1_7() {
    containerd_killed("1.7").await;
}

#[tokio::test]
async fn containerd_killed_2_1() {
    containerd_killed("2.1").await;
}
