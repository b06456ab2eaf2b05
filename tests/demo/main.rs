//! The demo behind README's run command: containerd 1.6 from the test bed, ckpt-shim in
//! front of it, and a pod run through the shim the way kubelet runs one, with what a node
//! admin wants to see at each step.
//!
//! Usage: demo [--instance NAME] [--shim PATH] [--keep]
//!
//! After the pod runs, it is checkpointed through the shim as kubelet's checkpoint API does
//! (containerd 1.6 has no CRI checkpoint: the shim does it through containerd's own API),
//! then restored into a new pod (containerd 1.6 has no restore either: the shim stages the
//! checkpoint and its runc wrapper restores it). Then the archive is inspected, built into
//! an OCI image in containerd's store and restored from that image in a third pod.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ckpt_shim::api::cri;
use ckpt_shim_tests::kubelet::{self, Kubelet, RunningPod};
use ckpt_shim_tests::raw::lazy_channel;
use ckpt_shim_tests::shim::{Options, Shim};
use ckpt_shim_tests::testbed::{self, Instance};

const USAGE: &str = "\
usage: demo [--instance NAME] [--shim PATH] [--keep]

Brings up containerd from the test bed (tests/testbed/testbed, needs root), starts
ckpt-shim in front of it, and runs a pod through the shim as kubelet would.

  --instance NAME  test bed instance [default: 1.6]
  --shim PATH      the ckpt-shim binary [default: $CKPT_SHIM_BIN, else ckpt-shim
                   next to this program, else target/debug/ckpt-shim]
  --keep           leave containerd up afterwards (it is also left up when it was
                   up before the demo started)";

struct Args {
    instance: String,
    shim: PathBuf,
    keep: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut instance = "1.6".to_string();
    let mut shim = None;
    let mut keep = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--instance" => instance = args.next().ok_or("--instance needs a value")?,
            "--shim" => shim = Some(PathBuf::from(args.next().ok_or("--shim needs a value")?)),
            "--keep" => keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let shim = shim
        .or_else(|| std::env::var_os("CKPT_SHIM_BIN").map(PathBuf::from))
        .or_else(|| {
            let beside = std::env::current_exe().ok()?.parent()?.join("ckpt-shim");
            beside.exists().then_some(beside)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/ckpt-shim"));
    if !shim.exists() {
        return Err(format!(
            "{} not found: build it (cargo build -p ckpt-shim) or pass --shim",
            shim.display()
        ));
    }
    Ok(Args {
        instance,
        shim,
        keep,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("demo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !nix::unistd::geteuid().is_root() {
        eprintln!("demo: must run as root (the test bed starts containerd)");
        return ExitCode::from(2);
    }
    // The support code starts the shim named by CKPT_SHIM_BIN; set before any thread.
    std::env::set_var("CKPT_SHIM_BIN", &args.shim);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(Demo::run(args)) {
        Ok(()) => {
            println!("\ndemo passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one step's title, runs it, prints ok/FAILED with its time.
async fn step<T>(
    title: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    println!("\n== {title}");
    let started = Instant::now();
    let result = f.await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match &result {
        Ok(_) => println!("   ok ({ms:.0} ms)"),
        Err(e) => println!("   FAILED ({ms:.0} ms): {e:#}"),
    }
    result
}

fn short(id: &str) -> &str {
    &id[..id.len().min(13)]
}

fn age(created_ns: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    format!("{:.1} s ago", (now - created_ns) as f64 / 1e9)
}

fn state_name(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "CREATED",
        Ok(cri::ContainerState::ContainerRunning) => "RUNNING",
        Ok(cri::ContainerState::ContainerExited) => "EXITED",
        _ => "UNKNOWN",
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("     {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Demo {
    instance: Option<Instance>,
    /// containerd was up before the demo: leave it up.
    was_up: bool,
    keep: bool,
    shim: Option<Shim>,
    kubelet: Option<Kubelet>,
    pod: Option<RunningPod>,
    /// The pods restored from the checkpoint.
    restored: Vec<RunningPod>,
    archive: Option<(PathBuf, u64)>,
    /// The runc wrapper containerd runs (next to the shim binary).
    wrapper: PathBuf,
}

impl Demo {
    async fn run(args: Args) -> anyhow::Result<()> {
        println!(
            "ckpt-shim demo: a pod run through ckpt-shim in front of containerd (test bed instance {})",
            args.instance
        );
        let mut demo = Demo {
            instance: None,
            was_up: false,
            keep: args.keep,
            shim: None,
            kubelet: None,
            pod: None,
            restored: Vec::new(),
            archive: None,
            wrapper: args.shim.with_file_name("ckpt-shim-runc"),
        };
        let result = demo.steps(&args).await;
        // Whatever happened: pod, shim and test bed go away (unless asked to stay).
        let cleanup = demo.clean_up().await;
        result.and(cleanup)
    }

    async fn steps(&mut self, args: &Args) -> anyhow::Result<()> {
        step(
            "containerd from the test bed",
            self.bring_up(&args.instance),
        )
        .await?;
        step("ckpt-shim in front of it", self.start_shim(&args.shim)).await?;
        step("Version through the shim", self.version()).await?;
        step(
            "RunPodSandbox + CreateContainer + StartContainer",
            self.run_pod(),
        )
        .await?;
        step("the pod as kubelet sees it", self.show_pod()).await?;
        step(
            "CheckpointContainer through the shim (kubelet's POST /checkpoint/...)",
            self.checkpoint(),
        )
        .await?;
        step(
            "restore: CreateContainer + StartContainer with the archive as image, in a new pod",
            self.restore(),
        )
        .await?;
        step(
            "forensics, and the checkpoint as an OCI image restored in a third pod",
            self.image(),
        )
        .await?;
        step(
            "StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox",
            self.remove_pod(),
        )
        .await?;
        step(
            "what the shim logged, one line per CRI call",
            self.show_calls(),
        )
        .await?;
        Ok(())
    }

    fn instance(&self) -> &Instance {
        self.instance.as_ref().expect("test bed up")
    }

    fn kubelet(&mut self) -> &mut Kubelet {
        self.kubelet.as_mut().expect("shim started")
    }

    async fn bring_up(&mut self, name: &str) -> anyhow::Result<()> {
        let env = testbed::env_of(name)?;
        self.was_up =
            std::fs::read_to_string(env.get("CONTAINERD_PIDFILE").unwrap_or(&String::new()))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        let name = name.to_string();
        // containerd 1.6 cannot restore: its runc runtime runs the shim's wrapper instead.
        let wrapper = self.wrapper.display().to_string();
        let instance = tokio::task::spawn_blocking(move || {
            Instance::up_with(&name, &[("CKPT_TESTBED_RUNC_WRAPPER", &wrapper)])
        })
        .await??;
        println!(
            "   containerd {} listening on {}{}",
            instance.get("CONTAINERD_VERSION"),
            instance.socket.display(),
            if self.was_up { " (was already up)" } else { "" }
        );
        self.instance = Some(instance);
        Ok(())
    }

    async fn start_shim(&mut self, binary: &Path) -> anyhow::Result<()> {
        let dir = self.instance().dir().join("demo-shim");
        for pid in testbed::stale_shim_processes(&self.instance().dir()) {
            println!("   stopping a ckpt-shim ({pid}) an earlier demo left running");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::fs::create_dir_all(&dir)?;
        // Archives, staging, failed CRIU logs and the audit log live beside the demo shim.
        let checkpoint = format!(
            "\n[checkpoint]\nallowed_dirs = [\"{d}/checkpoints\"]\nwork_dir = \"{d}/work\"\nfailed_log_dir = \"{d}/failed\"\naudit_log = \"{d}/audit.jsonl\"\n[restore]\nallowed_dirs = [\"{d}/checkpoints\"]\nstaging_dir = \"{d}/restore\"\n",
            d = dir.display()
        );
        std::fs::create_dir_all(dir.join("checkpoints"))?;
        let options = Options {
            runtime: checkpoint,
            log_level: Some("info,ckpt_shim::call=debug".into()),
            ..Options::default()
        };
        // Shim::start panics when the shim does not come up: run it as a task so that
        // becomes this step's error and the clean-up still runs.
        let runtime_socket = self.instance().socket.clone();
        let shim = tokio::spawn(async move { Shim::start(&dir, &runtime_socket, options).await })
            .await
            .map_err(|e| match e.try_into_panic() {
                Ok(p) => anyhow::anyhow!(
                    "{}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "ckpt-shim did not start".into())
                ),
                Err(e) => anyhow::anyhow!("{e}"),
            })?;
        println!(
            "   {} serve --config {}",
            binary.display(),
            shim.config.display()
        );
        println!(
            "   kubelet would use --container-runtime-endpoint=unix://{}",
            shim.socket.display()
        );
        println!(
            "   runtime behind it: unix://{}",
            self.instance().socket.display()
        );
        self.kubelet = Some(Kubelet::new(lazy_channel(&shim.socket)));
        self.shim = Some(shim);
        Ok(())
    }

    async fn version(&mut self) -> anyhow::Result<()> {
        let v = self.kubelet().version().await?;
        println!(
            "   runtime {} {}, CRI {}",
            v.runtime_name, v.runtime_version, v.runtime_api_version
        );
        let status = self.kubelet().status().await?;
        for c in status.status.map(|s| s.conditions).unwrap_or_default() {
            println!(
                "   {:<14} {}{}",
                c.r#type,
                c.status,
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.reason)
                }
            );
        }
        Ok(())
    }

    async fn run_pod(&mut self) -> anyhow::Result<()> {
        let uid = kubelet::unique("demo");
        let image = self.instance().get("BUSYBOX_IMAGE").to_string();
        let config = kubelet::host_network_pod(
            "counter",
            "default",
            &uid,
            Path::new(self.instance().get("POD_LOG_DIR")),
            &self.instance().cgroup_parent(&uid),
            &uid,
        );
        self.kubelet().ensure_image(&image).await?;
        let container = kubelet::counter_container("counter", &image);
        println!("   pod default/counter (host network), container 'counter' from {image}:");
        println!("     sh -c '{}'", kubelet::COUNTER_SCRIPT);
        let pod = self.kubelet().run_counter_pod(&config, &container).await?;
        println!(
            "   pod {}  container {}  RUNNING",
            short(&pod.pod_id),
            short(&pod.container_id)
        );
        self.pod = Some(pod);
        Ok(())
    }

    async fn checkpoint(&mut self) -> anyhow::Result<()> {
        let pod = self.pod.clone().context("no pod")?;
        let shim = self.shim.as_ref().context("no shim")?;
        let dir = shim.config.parent().context("shim dir")?.to_path_buf();
        let binary = ckpt_shim_tests::shim::binary();
        // kubelet's own naming: checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let location = dir.join(format!(
            "checkpoints/checkpoint-counter_default-counter-{now}.tar"
        ));
        let before = self.counter(&pod.container_id).await?;
        let started = Instant::now();
        self.kubelet()
            .runtime
            .checkpoint_container(cri::CheckpointContainerRequest {
                container_id: pod.container_id.clone(),
                location: location.display().to_string(),
                timeout: 60,
            })
            .await
            .context("CheckpointContainer")?;
        let took = started.elapsed();
        self.archive = Some((location.clone(), before));
        let meta = std::fs::metadata(&location)?;
        println!(
            "   archive {} ({} KiB, mode {:o}) in {took:?}",
            location.display(),
            meta.len() >> 10,
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777
        );
        let mut members: Vec<String> = Vec::new();
        for entry in tar::Archive::new(std::fs::File::open(&location)?).entries()? {
            let path = entry?.path()?.display().to_string();
            let path = path.trim_end_matches('/');
            let top = path.split('/').next().unwrap_or("").to_string();
            let name = if path.contains('/') {
                format!("{top}/")
            } else {
                top
            };
            if !members.contains(&name) {
                members.push(name);
            }
        }
        println!("   members: {}", members.join(" "));
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(format!("{}.json", location.display()))?)?;
        let digest = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut std::fs::File::open(&location)?, &mut h)?;
            format!("{:x}", h.finalize())
        };
        println!(
            "   sidecar: engine {}, CRIU {}, pod {}/{}, sha256 {}",
            sidecar["engine"].as_str().unwrap_or("?"),
            sidecar["criu_version"].as_str().unwrap_or("?"),
            sidecar["namespace"].as_str().unwrap_or("?"),
            sidecar["pod"].as_str().unwrap_or("?"),
            sidecar["sha256"].as_str().unwrap_or("?")
        );
        if sidecar["sha256"].as_str() != Some(digest.as_str()) {
            bail!("the sidecar digest does not match the archive (sha256 {digest})");
        }
        println!("   sha256 of the file matches the sidecar");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let after = self.counter(&pod.container_id).await?;
        let state = self
            .kubelet()
            .container_status(&pod.container_id)
            .await?
            .state;
        if state != cri::ContainerState::ContainerRunning as i32 || after <= before {
            bail!("the container did not keep running after the checkpoint (state {state}, counter {before} -> {after})");
        }
        println!("   container still RUNNING, counter {before} -> {after}");
        let out = std::process::Command::new(&binary)
            .args(["audit", "verify"])
            .arg(dir.join("audit.jsonl"))
            .output()?;
        println!(
            "   ckpt-shim audit verify: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
        if !out.status.success() {
            bail!(
                "audit verify failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The counter's current value, read inside the container through ExecSync.
    /// The counter rewrites /tmp/count each tick (truncate, then write): a read that lands in
    /// between sees nothing and is made again.
    async fn counter(&mut self, container_id: &str) -> anyhow::Result<u64> {
        let mut last = String::new();
        for _ in 0..20 {
            let out = self
                .kubelet()
                .exec_sync(container_id, &["cat", "/tmp/count"], 10)
                .await?;
            last = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if let Ok(n) = last.parse() {
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("counter value: {last:?} is not a number")
    }

    async fn show_pod(&mut self) -> anyhow::Result<()> {
        let pod = self.pod.clone().context("no pod")?;
        // Let the counter count a little.
        kubelet::wait_counter(&pod.log_path, 10, Duration::from_secs(10)).await?;

        println!("   ListContainers (this pod):");
        println!(
            "     {:<13}  {:<8}  {:<8}  {:<12}  {:<13}  IMAGE",
            "CONTAINER", "NAME", "STATE", "CREATED", "POD"
        );
        for c in self.kubelet().pod_containers(&pod.pod_id).await? {
            println!(
                "     {:<13}  {:<8}  {:<8}  {:<12}  {:<13}  {}",
                short(&c.id),
                c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("?"),
                state_name(c.state),
                age(c.created_at),
                short(&c.pod_sandbox_id),
                c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("?"),
            );
        }

        let ps = self
            .kubelet()
            .exec_sync(&pod.container_id, &["ps", "-o", "pid,args"], 10)
            .await?;
        if ps.exit_code != 0 {
            bail!(
                "ps exited {}: {}",
                ps.exit_code,
                String::from_utf8_lossy(&ps.stderr)
            );
        }
        println!("   ExecSync ps -o pid,args (inside the container):");
        println!("{}", indent(&String::from_utf8_lossy(&ps.stdout)));

        let lines = kubelet::read_cri_log(&pod.log_path)?;
        println!(
            "   last lines of the container log {}:",
            pod.log_path.display()
        );
        let tail: Vec<String> = lines[lines.len().saturating_sub(5)..]
            .iter()
            .map(|l| format!("{} {} {} {}", l.time, l.stream, l.tag, l.content))
            .collect();
        println!("{}", indent(&tail.join("\n")));
        let values = kubelet::counter_values(&lines);
        if values.first() != Some(&1) || values.windows(2).any(|w| w[1] != w[0] + 1) {
            bail!("the counter in the log does not go 1, 2, 3...: {values:?}");
        }
        Ok(())
    }

    async fn remove_pod(&mut self) -> anyhow::Result<()> {
        let restored = std::mem::take(&mut self.restored);
        for pod in self.pod.take().into_iter().chain(restored) {
            self.kubelet().remove_pod_fully(&pod.pod_id).await?;
            let filter = cri::PodSandboxFilter {
                id: pod.pod_id.clone(),
                ..Default::default()
            };
            let left = self.kubelet().list_pods(Some(filter)).await?;
            if !left.is_empty() {
                bail!("the pod is still listed after removal: {left:?}");
            }
            println!("   pod {} is gone", short(&pod.pod_id));
        }
        let dir = self
            .shim
            .as_ref()
            .context("no shim")?
            .config
            .parent()
            .context("shim dir")?
            .join("restore");
        let staged = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        if staged != 0 {
            bail!(
                "{staged} staged checkpoints left in {} after RemoveContainer",
                dir.display()
            );
        }
        println!("   the staged checkpoints went with the restored containers");
        Ok(())
    }

    /// The checkpoint comes back in a new pod: CreateContainer names the archive as its
    /// image, the shim stages it and has containerd's runc runtime (the shim's wrapper)
    /// restore it at StartContainer.
    async fn restore(&mut self) -> anyhow::Result<()> {
        let (archive, _) = self.archive.clone().context("no checkpoint")?;
        self.restore_into("counter-restored", &archive.display().to_string())
            .await
    }

    /// What an analyst sees in the archive, then the archive as an OCI image in containerd's
    /// store (no buildah), and a third pod restored from that image.
    async fn image(&mut self) -> anyhow::Result<()> {
        let (archive, _) = self.archive.clone().context("no checkpoint")?;
        let binary = ckpt_shim_tests::shim::binary();
        let out = std::process::Command::new(&binary)
            .args(["inspect", "--ps-tree"])
            .arg(&archive)
            .output()?;
        if !out.status.success() {
            bail!("inspect: {}", String::from_utf8_lossy(&out.stderr));
        }
        println!("   ckpt-shim inspect --ps-tree {}:", archive.display());
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().take(20).collect();
        println!("{}", indent(&lines.join("\n")));
        let name = "localhost/ckpt-shim-demo/counter:checkpoint";
        let socket = format!("unix://{}", self.instance().socket.display());
        let out = std::process::Command::new(&binary)
            .args(["image", "build"])
            .arg(&archive)
            .args([name, "--import", "--containerd", &socket])
            .output()?;
        if !out.status.success() {
            bail!("image build: {}", String::from_utf8_lossy(&out.stderr));
        }
        println!(
            "   ckpt-shim image build {} {name} --import: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        self.restore_into("counter-from-image", name).await
    }

    async fn restore_into(&mut self, pod_name: &str, image: &str) -> anyhow::Result<()> {
        let (_, at) = self.archive.clone().context("no checkpoint")?;
        let uid = kubelet::unique(pod_name);
        let config = kubelet::host_network_pod(
            pod_name,
            "default",
            &uid,
            Path::new(self.instance().get("POD_LOG_DIR")),
            &self.instance().cgroup_parent(&uid),
            &uid,
        );
        let mut container = kubelet::counter_container("counter", image);
        container.command.clear();
        println!("   pod default/{pod_name}, container 'counter' with image {image}");
        let started = Instant::now();
        let pod = self.kubelet().run_counter_pod(&config, &container).await?;
        println!(
            "   pod {}  container {}  RUNNING ({:?} for RunPodSandbox + CreateContainer + StartContainer)",
            short(&pod.pod_id),
            short(&pod.container_id),
            started.elapsed()
        );
        self.restored.push(pod.clone());
        let now = self.counter(&pod.container_id).await?;
        kubelet::wait_counter(&pod.log_path, 1, Duration::from_secs(10)).await?;
        let values = kubelet::counter_values(&kubelet::read_cri_log(&pod.log_path)?);
        let first = values.first().copied().unwrap_or(0);
        println!(
            "   counter was {at} when checkpointed; the restored process is at {now}, and its new log starts at {first}"
        );
        if now < at || first < at {
            bail!("the container started fresh instead of restoring (counter {now}, log from {first}, checkpointed at {at})");
        }
        let shim = self.shim.as_ref().context("no shim")?;
        let audit = shim
            .config
            .parent()
            .context("shim dir")?
            .join("audit.jsonl");
        let text = std::fs::read_to_string(&audit)?;
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
        println!(
            "   audit: {} {} of {}/{} from {} (sha256 {}), {} ms",
            last["action"].as_str().unwrap_or("?"),
            last["result"].as_str().unwrap_or("?"),
            last["namespace"].as_str().unwrap_or("?"),
            last["container"].as_str().unwrap_or("?"),
            last["location"].as_str().unwrap_or("?"),
            &last["sha256"].as_str().unwrap_or("?")
                [..12.min(last["sha256"].as_str().unwrap_or("?").len())],
            last["duration_ms"]
        );
        if last["action"] != "restore" || last["result"] != "succeeded" {
            bail!("the audit log's last record is not a successful restore: {last}");
        }
        Ok(())
    }

    async fn show_calls(&mut self) -> anyhow::Result<()> {
        let shim = self.shim.as_ref().context("no shim")?;
        println!(
            "   from {} (level info,ckpt_shim::call=debug):",
            shim.log.display()
        );
        println!("     {:<44}  {:<16}  {:>9}", "METHOD", "STATUS", "TIME");
        let mut n = 0;
        for line in shim.logs().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            // The JSON formatter puts the fields at the top level (or under "fields").
            let f = if v["fields"].is_object() {
                &v["fields"]
            } else {
                &v
            };
            if f["message"] != "call" {
                continue;
            }
            let status = f["grpc_status"].as_str().unwrap_or("?");
            let status = match status.parse::<i32>() {
                Ok(code) => format!("{code} {:?}", tonic::Code::from(code)),
                Err(_) => status.to_string(),
            };
            println!(
                "     {:<44}  {:<16}  {:>6} us",
                f["method"].as_str().unwrap_or("?"),
                status,
                f["duration_us"].as_u64().unwrap_or(0)
            );
            n += 1;
        }
        if n == 0 {
            bail!("no call lines in the shim's log");
        }
        Ok(())
    }

    /// Best effort, in reverse order: pod, shim, test bed.
    async fn clean_up(&mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        let restored = std::mem::take(&mut self.restored);
        for pod in self.pod.take().into_iter().chain(restored) {
            if let Some(k) = self.kubelet.as_mut() {
                if let Err(e) = k.remove_pod_fully(&pod.pod_id).await {
                    eprintln!("   removing pod {}: {e:#}", short(&pod.pod_id));
                }
            }
        }
        if let Some(shim) = self.shim.take() {
            println!("\n== stopping ckpt-shim (SIGTERM)");
            let status = shim.stop().await;
            println!("   exited: {status}");
            if !status.success() {
                result = Err(anyhow::anyhow!("ckpt-shim exited {status}"));
            }
        }
        if let Some(instance) = self.instance.take() {
            if self.keep || self.was_up {
                println!(
                    "\n== leaving containerd {} up ({}); take it down with: tests/testbed/testbed down {}",
                    instance.name,
                    if self.keep { "--keep" } else { "it was up before" },
                    instance.name
                );
                instance.keep();
            } else {
                println!("\n== test bed down");
                let started = Instant::now();
                tokio::task::spawn_blocking(move || instance.down()).await??;
                println!(
                    "   ok ({:.0} ms): containerd stopped, nothing mounted, no shims left",
                    started.elapsed().as_secs_f64() * 1000.0
                );
            }
        }
        result
    }
}
