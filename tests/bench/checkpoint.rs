//! Checkpoint benchmark on the real test bed (root): a container holding 256 MiB of
//! dirtied memory, checkpointed
//!   - on containerd 1.6 through the shim (full archive, digest, sidecar, audit) versus
//!     containerd's raw task checkpoint of the same container (CRIU images only);
//!   - on containerd 2.1 through the shim versus 2.1's own CRI CheckpointContainer.
//!
//! Runs alternate; medians and ratios are printed with the shim's peak RSS. Run with
//!
//!     cargo build --release -p ckpt-shim -p ckpt-shim-runc && cargo bench -p ckpt-shim-tests --bench checkpoint

use std::time::{Duration, Instant};

use ckpt_shim::api::containerd::runc::v1::CheckpointOptions;
use ckpt_shim::runtime::containerd::Containerd;
use ckpt_shim_tests::bed::{self, *};

const MIB: u32 = 256;
const ROUNDS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The median of `runtime_ms` over the shim's CheckpointContainer log lines: how long the
/// runtime (and CRIU) took, so that the rest is the shim's own work.
fn median_runtime_ms(logs: &str) -> u64 {
    let mut v: Vec<u64> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "CheckpointContainer")
        .filter_map(|v| v["runtime_ms"].as_u64())
        .collect();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// How long CRIU kept the container frozen, from its dump.log: from the freezer reporting
/// FROZEN to the last task let go.
fn frozen_ms(log: &str) -> Option<f64> {
    let time =
        |l: &str| -> Option<f64> { l.strip_prefix('(')?.split(')').next()?.trim().parse().ok() };
    let frozen = log.lines().find(|l| {
        l.contains("freezer.state=FROZEN")
            || l.contains("cgroup.freeze=1")
            || l.contains("freezing processes: ")
    })?;
    let thawed = log.lines().rev().find(|l| l.contains("Unseizing"))?;
    Some((time(thawed)? - time(frozen)?) * 1000.0)
}

fn frozen_ms_in_archive(archive: &std::path::Path) -> Option<f64> {
    use std::io::Read;
    let mut a = tar::Archive::new(std::fs::File::open(archive).ok()?);
    for entry in a.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path().ok()?.as_os_str() == "dump.log" {
            let mut log = String::new();
            entry.read_to_string(&mut log).ok()?;
            return frozen_ms(&log);
        }
    }
    None
}

fn median_ms(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2)
        .map_or_else(|| "?".into(), |m| format!("{m:.0}"))
}

fn main() {
    if let Some(why) = skip() {
        println!("checkpoint benchmark skipped: {why}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("checkpoint of a container holding {MIB} MiB of dirtied memory, median of {ROUNDS}, shim {}", ckpt_shim_tests::shim::binary().display());
        bench("1.6", "raw task checkpoint (CRIU images only)", false).await;
        bench("2.1", "containerd's own CRI CheckpointContainer", true).await;
    });
}

/// `also_emulated`: a second shim with `checkpoint.mode = emulate` checkpoints the same
/// container in the same rounds (the shim's own checkpoint where the runtime has one).
async fn bench(version: &str, baseline: &str, also_emulated: bool) {
    let bed = Bed::up(&format!("{version}-bench"));
    let dirs = Dirs::new();
    let shim = shim(&bed, &dirs, "").await;
    let mut via_shim = cri(&shim.socket).await;
    let emulated_dirs = Dirs::new();
    let mut emulated = None;
    if also_emulated {
        let s = bed::shim(&bed, &emulated_dirs, "mode = \"emulate\"").await;
        let c = cri(&s.socket).await;
        emulated = Some((s, c));
    }
    let mut emulated_times = Vec::new();
    // Frozen times (ms): through the shim, through the emulating shim, the baseline.
    let (mut frozen_shim, mut frozen_emulated, mut frozen_base) =
        (Vec::new(), Vec::new(), Vec::new());
    let mut direct = cri(&bed.socket).await;
    let pod = pod(&mut via_shim, &bed, "bench-pod", "bench").await;
    let script = format!(
        "x=$(dd if=/dev/zero bs=1M count={MIB} 2>/dev/null | tr '\\0' x); echo ready; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"
    );
    let (id, log) = container(&mut via_shim, &bed, &pod, "big", &script, &[]).await;
    wait_for("memory dirtied", Duration::from_secs(120), || {
        counts(&log).len() >= 2
    })
    .await;
    let containerd = Containerd::new(ckpt_shim::runtime::channel(&bed.socket), "k8s.io").unwrap();

    let (mut shim_times, mut base_times) = (Vec::new(), Vec::new());
    let mut archive_size = 0;
    for round in 0..ROUNDS {
        let location = dirs.archives().join(format!("shim-{round}.tar"));
        let t = Instant::now();
        checkpoint(&mut via_shim, &id, &location, 300)
            .await
            .unwrap();
        shim_times.push(t.elapsed());
        archive_size = std::fs::metadata(&location).unwrap().len();
        frozen_shim.extend(frozen_ms_in_archive(&location));
        let _ = std::fs::remove_file(&location);
        let _ = std::fs::remove_file(format!("{}.json", location.display()));

        if let Some((_, c)) = emulated.as_mut() {
            let location = emulated_dirs
                .archives()
                .join(format!("emulated-{round}.tar"));
            let t = Instant::now();
            checkpoint(c, &id, &location, 300).await.unwrap();
            emulated_times.push(t.elapsed());
            frozen_emulated.extend(frozen_ms_in_archive(&location));
            let _ = std::fs::remove_file(&location);
            let _ = std::fs::remove_file(format!("{}.json", location.display()));
        }

        let t = Instant::now();
        if version == "1.6" {
            let images = dirs.root.path().join(format!("raw-{round}"));
            let work = dirs.root.path().join(format!("raw-work-{round}"));
            let options = CheckpointOptions {
                exit: false,
                image_path: images.display().to_string(),
                work_path: work.display().to_string(),
                ..Default::default()
            };
            containerd.checkpoint(&id, options).await.unwrap();
            base_times.push(t.elapsed());
            let log = std::fs::read_to_string(work.join("dump.log")).unwrap_or_default();
            frozen_base.extend(frozen_ms(&log));
            let _ = std::fs::remove_dir_all(&images);
            let _ = std::fs::remove_dir_all(&work);
        } else {
            let location = dirs.archives().join(format!("native-{round}.tar"));
            checkpoint(&mut direct, &id, &location, 300).await.unwrap();
            base_times.push(t.elapsed());
            frozen_base.extend(frozen_ms_in_archive(&location));
            let _ = std::fs::remove_file(&location);
        }
    }
    let (s, b) = (median(shim_times), median(base_times));
    println!(
        "containerd {version}: through the shim {s:.3?} (archive {} MiB; the runtime's part {} ms) | {baseline} {b:.3?} | ratio {:.2}x | shim peak RSS {} MiB",
        archive_size >> 20,
        median_runtime_ms(&shim.logs()),
        s.as_secs_f64() / b.as_secs_f64(),
        shim.peak_rss_kib() >> 10
    );
    println!(
        "    container frozen (CRIU's dump.log): through the shim {} ms | {baseline} {} ms",
        median_ms(frozen_shim),
        median_ms(frozen_base.clone())
    );
    if let Some((s_emulated, _)) = &emulated {
        let e = median(emulated_times);
        println!(
            "containerd {version}, checkpoint.mode = emulate: through the shim {e:.3?} (the runtime's part {} ms) | {baseline} {b:.3?} | ratio {:.2}x | shim peak RSS {} MiB",
            median_runtime_ms(&s_emulated.logs()),
            e.as_secs_f64() / b.as_secs_f64(),
            s_emulated.peak_rss_kib() >> 10
        );
        println!(
            "    container frozen (CRIU's dump.log): through the shim {} ms | {baseline} {} ms",
            median_ms(frozen_emulated),
            median_ms(frozen_base)
        );
    }
    remove_pod(&mut via_shim, &pod).await;
}
