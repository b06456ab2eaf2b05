//! Proxy overhead benchmark: the fake runtime driven directly and through the shim in one
//! run, with the ratio printed per case. Run with
//!
//!     cargo build --release -p ckpt-shim -p ckpt-shim-runc && cargo bench -p ckpt-shim-tests --bench proxy
//!
//! Cases: Version and a small ListContainers at concurrency 1 and 64 (latency p50/p99 and
//! throughput), a 16 MiB ListContainers answer (time per call), and the shim's peak RSS.
//! Direct and shim runs alternate so drift on a shared machine hits both alike.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ckpt_shim::api::cri;
use ckpt_shim::api::cri::runtime_service_client::RuntimeServiceClient;
use ckpt_shim_tests::fake_runtime::FakeRuntime;
use ckpt_shim_tests::raw::channel;
use ckpt_shim_tests::shim::{Options, Shim};
use tonic::transport::Channel;

type Client = RuntimeServiceClient<Channel>;

#[derive(Clone, Copy)]
enum Call {
    Version,
    ListSmall,
    ListHuge,
}

async fn call(client: &mut Client, what: Call) {
    match what {
        Call::Version => {
            client
                .version(cri::VersionRequest::default())
                .await
                .unwrap();
        }
        Call::ListSmall => {
            client
                .list_containers(cri::ListContainersRequest::default())
                .await
                .unwrap();
        }
        Call::ListHuge => {
            let mut r = tonic::Request::new(cri::ListContainersRequest::default());
            r.metadata_mut().insert("fake-count", "16".parse().unwrap());
            r.metadata_mut()
                .insert("fake-label-bytes", "1040000".parse().unwrap());
            let answer = client.list_containers(r).await.unwrap().into_inner();
            assert_eq!(answer.containers.len(), 16);
        }
    }
}

struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Run {
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `concurrency` tasks each make calls back to back for `duration` (after a warm-up).
async fn load(socket: &Path, what: Call, concurrency: usize, duration: Duration) -> Run {
    let ch = channel(socket).await.unwrap();
    let client = RuntimeServiceClient::new(ch).max_decoding_message_size(64 << 20);
    for _ in 0..50.min(if matches!(what, Call::ListHuge) {
        2
    } else {
        50
    }) {
        call(&mut client.clone(), what).await;
    }
    let started = Instant::now();
    let stop = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < stop {
                let t = Instant::now();
                call(&mut client, what).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Run {
        latencies,
        elapsed: started.elapsed(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRuntime::start(&dir.path().join("runtime.sock")).await;
    let shim = Arc::new(
        Shim::start(
            dir.path(),
            &fake.socket,
            Options {
                log_level: Some("warn".into()),
                ..Default::default()
            },
        )
        .await,
    );
    // A plain byte relay as a floor: what one extra unix-socket hop costs on this machine.
    let socat_socket = dir.path().join("socat.sock");
    let socat = std::process::Command::new("socat")
        .arg(format!("UNIX-LISTEN:{},fork", socat_socket.display()))
        .arg(format!("UNIX-CONNECT:{}", fake.socket.display()))
        .spawn()
        .ok();
    if socat.is_some() {
        for _ in 0..200 {
            if socat_socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let rounds = 2;
    println!("ckpt-shim proxy benchmark: fake runtime direct vs through the shim (and socat, a plain byte relay, as a floor)");
    println!(
        "{} s per case and path, {rounds} alternating rounds; shim binary {}",
        seconds,
        ckpt_shim_tests::shim::binary().display()
    );
    println!(
        "{:<26} {:<7} {:>10} {:>10} {:>10} {:>10} {:>11} {:>7}",
        "case", "path", "p50", "p99", "+p50", "+p99", "ops/s", "ratio"
    );
    let cases: [(&str, Call, usize); 5] = [
        ("Version c=1", Call::Version, 1),
        ("ListContainers(3) c=1", Call::ListSmall, 1),
        ("Version c=64", Call::Version, 64),
        ("ListContainers(3) c=64", Call::ListSmall, 64),
        ("ListContainers 16MiB c=1", Call::ListHuge, 1),
    ];
    let mut paths: Vec<(&str, &Path)> = vec![("direct", &fake.socket), ("shim", &shim.socket)];
    if socat.is_some() {
        paths.push(("socat", &socat_socket));
    }
    for (name, what, concurrency) in cases {
        let per_run = Duration::from_secs(seconds) / rounds;
        let mut runs: Vec<Run> = paths
            .iter()
            .map(|_| Run {
                latencies: Vec::new(),
                elapsed: Duration::ZERO,
            })
            .collect();
        for _ in 0..rounds {
            for (i, (_, socket)) in paths.iter().enumerate() {
                let r = load(socket, what, concurrency, per_run).await;
                runs[i].elapsed += r.elapsed;
                runs[i].latencies.extend(r.latencies);
            }
        }
        let (d50, d99, dput) = (runs[0].pct(0.5), runs[0].pct(0.99), runs[0].throughput());
        for (i, (path, _)) in paths.iter().enumerate() {
            let r = &runs[i];
            let ratio = if matches!(what, Call::ListHuge) {
                // Time per call against direct (target <= 1.05).
                r.pct(0.5).as_secs_f64() / d50.as_secs_f64()
            } else {
                // Throughput against direct (target >= 0.95 at c=64).
                r.throughput() / dput
            };
            println!(
                "{:<26} {:<7} {:>8.1}us {:>8.1}us {:>8.1}us {:>8.1}us {:>11.0} {:>7.3}",
                if i == 0 { name } else { "" },
                path,
                us(r.pct(0.5)),
                us(r.pct(0.99)),
                us(r.pct(0.5)) - us(d50),
                us(r.pct(0.99)) - us(d99),
                r.throughput(),
                ratio
            );
        }
    }
    println!(
        "(ratio: throughput against direct; for the 16MiB case, p50 time per call against direct)"
    );
    println!(
        "shim peak RSS (VmHWM): {:.1} MiB",
        shim.peak_rss_kib() as f64 / 1024.0
    );
    if let Some(mut socat) = socat {
        let _ = socat.kill();
        let _ = socat.wait();
    }
}
