//! Restore benchmark on the real test bed (root), containerd 1.6 whose runc runtime runs the
//! shim's wrapper:
//!   - a container holding 256 MiB of dirtied memory, restored through the shim
//!     (CreateContainer with the archive as image, then StartContainer), against the raw
//!     `runc restore` of the same checkpoint into the same bundle, timed around the runc
//!     process by the wrapper (what containerd would run if its CRI could restore);
//!   - an ordinary StartContainer on a containerd running the wrapper against one running
//!     runc itself, alternating, straight to containerd (the wrapper's cost alone).
//!
//! Medians and ratios are printed. Run with
//!
//!     cargo build --release -p ckpt-shim -p ckpt-shim-runc && cargo bench -p ckpt-shim-tests --bench restore

use std::time::{Duration, Instant};

use ckpt_shim::api::cri::*;
use ckpt_shim_tests::bed::*;

const MIB: u32 = 256;
const ROUNDS: usize = 5;
const START_ROUNDS: usize = 31;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if let Some(why) = skip() {
        println!("restore benchmark skipped: {why}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let shim = ckpt_shim_tests::shim::binary();
        let wrapper = shim.with_file_name("ckpt-shim-runc");
        println!("restore benchmark, shim {}", shim.display());
        restore(&wrapper).await;
        ordinary_start(&wrapper).await;
    });
}

fn request(pod: &Pod, name: &str, image: &str) -> CreateContainerRequest {
    create_request(pod, name, image, &["sleep", "3600"], &[])
}

async fn restore(wrapper: &std::path::Path) {
    let bed = Bed::up_with(
        "1.6-rbench",
        &[("CKPT_TESTBED_RUNC_WRAPPER", wrapper.to_str().unwrap())],
    );
    let dirs = Dirs::new();
    let staging = dirs.root.path().join("restore");
    let config = format!(
        "[restore]\nallowed_dirs = [\"{}\"]\nstaging_dir = \"{}\"\n",
        dirs.archives().display(),
        staging.display()
    );
    let shim = shim(&bed, &dirs, &config).await;
    let mut cri = cri(&shim.socket).await;
    let pod_a = pod(&mut cri, &bed, "bench-pod", "bench").await;
    let script = format!(
        "x=$(dd if=/dev/zero bs=1M count={MIB} 2>/dev/null | tr '\\0' x); echo ready; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"
    );
    let (id, log) = container(&mut cri, &bed, &pod_a, "big", &script, &[]).await;
    wait_for("memory dirtied", Duration::from_secs(120), || {
        counts(&log).len() >= 2
    })
    .await;
    let archive = dirs.archives().join("big.tar");
    checkpoint(&mut cri, &id, &archive, 300).await.unwrap();
    remove_pod(&mut cri, &pod_a).await;

    let (mut create, mut start, mut raw, mut rootfs) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let pod_b = pod(&mut cri, &bed, &format!("restored-{round}"), "bench").await;
        let t = Instant::now();
        let new = cri
            .create_container(request(&pod_b, "big", &archive.display().to_string()))
            .await
            .unwrap()
            .into_inner()
            .container_id;
        create.push(t.elapsed());
        let t = Instant::now();
        cri.start_container(StartContainerRequest {
            container_id: new.clone(),
        })
        .await
        .unwrap();
        start.push(t.elapsed());
        let dir = std::fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        let outcome = ckpt_format::plan::read_outcome(&dir).expect("the wrapper's outcome");
        raw.push(Duration::from_millis(outcome.restore_ms));
        rootfs.push(Duration::from_millis(outcome.rootfs_ms));
        remove_pod(&mut cri, &pod_b).await;
    }
    let unpack: Vec<Duration> = shim
        .logs()
        .lines()
        .filter(|l| l.contains("checkpoint unpacked and checked"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ms"].as_u64())
        .map(Duration::from_millis)
        .collect();
    let (c, s, r, f) = (median(create), median(start), median(raw), median(rootfs));
    println!(
        "restore of {MIB} MiB on containerd 1.6 (median of {ROUNDS}, archive {} MiB):",
        std::fs::metadata(&archive).unwrap().len() >> 20
    );
    println!(
        "  through the shim: CreateContainer {:.1} ms (of which unpacking, hashing and checking the archive {:.1} ms) + StartContainer {:.1} ms = {:.1} ms",
        ms(c),
        ms(median(unpack)),
        ms(s),
        ms(c + s)
    );
    println!(
        "  raw runc restore of the same checkpoint: {:.1} ms (rootfs changes applied before it: {:.1} ms)",
        ms(r),
        ms(f)
    );
    println!(
        "  ratio StartContainer / raw runc restore {:.2}x; whole restore / raw runc restore {:.2}x; shim peak RSS {} MiB",
        s.as_secs_f64() / r.as_secs_f64(),
        (c + s).as_secs_f64() / r.as_secs_f64(),
        shim.peak_rss_kib() >> 10
    );
}

/// StartContainer of a plain container, straight to containerd, with and without the
/// wrapper as BinaryName.
async fn ordinary_start(wrapper: &std::path::Path) {
    let with = Bed::up_with(
        "1.6-swrap",
        &[("CKPT_TESTBED_RUNC_WRAPPER", wrapper.to_str().unwrap())],
    );
    let without = Bed::up("1.6-splain");
    let mut beds = [
        (&with, cri(&with.socket).await),
        (&without, cri(&without.socket).await),
    ];
    let mut pods = Vec::new();
    for (bed, c) in beds.iter_mut() {
        pods.push(pod(c, bed, "start-bench", "bench").await);
    }
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..START_ROUNDS {
        for (i, (bed, c)) in beds.iter_mut().enumerate() {
            let name = format!("plain-{round}");
            let id = c
                .create_container(request(&pods[i], &name, bed.var("BUSYBOX_IMAGE")))
                .await
                .unwrap()
                .into_inner()
                .container_id;
            let t = Instant::now();
            c.start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            times[i].push(t.elapsed());
            c.stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
            c.remove_container(RemoveContainerRequest { container_id: id })
                .await
                .unwrap();
        }
    }
    let [w, p] = times.map(median);
    println!(
        "ordinary StartContainer on containerd 1.6 (median of {START_ROUNDS}): runc via the wrapper {:.1} ms | runc {:.1} ms | ratio {:.2}x",
        ms(w),
        ms(p),
        w.as_secs_f64() / p.as_secs_f64()
    );
    for (i, (_, c)) in beds.iter_mut().enumerate() {
        remove_pod(c, &pods[i]).await;
    }
}
