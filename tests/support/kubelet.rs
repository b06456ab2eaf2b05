//! A small kubelet-like CRI driver: the calls kubelet makes to run a pod and its
//! containers, in kubelet's order, over any channel (straight to the runtime or through the
//! shim). Used by the end-to-end tests and the demo.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ckpt_shim::api::cri;
use ckpt_shim::api::cri::image_service_client::ImageServiceClient;
use ckpt_shim::api::cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Every CRI call gets a deadline, as kubelet sets one (its default is 2 minutes; tests
/// want to fail sooner).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The label every pod started here carries, so leftovers can be found.
pub const LABEL: &str = "io.ckpt-shim.e2e";

/// A shell loop that counts on stdout every 0.1 s, keeps the last value in /tmp/count,
/// says hello once on stderr, and exits 0 on SIGTERM (the trap runs after the current
/// `sleep`), so a stop is quick and its exit code is known.
pub const COUNTER_SCRIPT: &str = "echo counter starting >&2; echo ready > /tmp/marker; \
     trap 'echo stopping >&2; exit 0' TERM; i=0; \
     while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; done";

fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(CALL_TIMEOUT);
    r
}

/// A pod with host networking (no CNI needed) and the given identity.
///
/// kubelet names the log directory `<namespace>_<name>_<uid>` below /var/log/pods; here the
/// root is the test bed's pod log directory. A host-network pod shares the host's UTS
/// namespace, so it must not ask for a hostname.
pub fn host_network_pod(
    name: &str,
    namespace: &str,
    uid: &str,
    log_root: &Path,
    cgroup_parent: &str,
    run: &str,
) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: namespace.into(),
            attempt: 0,
        }),
        hostname: String::new(),
        log_directory: log_root
            .join(format!("{namespace}_{name}_{uid}"))
            .to_string_lossy()
            .into_owned(),
        labels: HashMap::from([(LABEL.to_string(), run.to_string())]),
        annotations: HashMap::from([("io.ckpt-shim.e2e/pod".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The counter container ([`COUNTER_SCRIPT`]) from `image`; its log is `<name>/0.log` in
/// the pod's log directory, as kubelet names it.
pub fn counter_container(name: &str, image: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), COUNTER_SCRIPT.into()],
        labels: HashMap::from([("io.ckpt-shim.e2e/container".to_string(), name.to_string())]),
        annotations: HashMap::from([("io.ckpt-shim.e2e/role".to_string(), "counter".to_string())]),
        log_path: format!("{name}/0.log"),
        envs: vec![cri::KeyValue {
            key: "E2E".into(),
            value: "1".into(),
        }],
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod with one running container, as [`Kubelet::run_counter_pod`] left it.
#[derive(Debug, Clone)]
pub struct RunningPod {
    pub pod_id: String,
    pub container_id: String,
    pub config: cri::PodSandboxConfig,
    /// The container's CRI log file.
    pub log_path: PathBuf,
}

/// The CRI clients kubelet holds, on one channel.
#[derive(Clone)]
pub struct Kubelet {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Kubelet {
    pub fn new(channel: Channel) -> Kubelet {
        Kubelet {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    pub async fn version(&mut self) -> anyhow::Result<cri::VersionResponse> {
        let r = self
            .runtime
            .version(request(cri::VersionRequest::default()));
        Ok(r.await.context("Version")?.into_inner())
    }

    pub async fn status(&mut self) -> anyhow::Result<cri::StatusResponse> {
        let r = self
            .runtime
            .status(request(cri::StatusRequest { verbose: false }));
        Ok(r.await.context("Status")?.into_inner())
    }

    /// ImageStatus, and PullImage when the image is missing (kubelet's IfNotPresent).
    pub async fn ensure_image(&mut self, image: &str) -> anyhow::Result<cri::Image> {
        let spec = cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        };
        let status = self.images.image_status(request(cri::ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        }));
        if let Some(found) = status.await.context("ImageStatus")?.into_inner().image {
            return Ok(found);
        }
        let pull = self.images.pull_image(request(cri::PullImageRequest {
            image: Some(spec.clone()),
            ..Default::default()
        }));
        pull.await.context("PullImage")?;
        let status = self.images.image_status(request(cri::ImageStatusRequest {
            image: Some(spec),
            verbose: false,
        }));
        status
            .await
            .context("ImageStatus after PullImage")?
            .into_inner()
            .image
            .with_context(|| format!("{image} missing after PullImage"))
    }

    pub async fn run_pod(&mut self, config: &cri::PodSandboxConfig) -> anyhow::Result<String> {
        std::fs::create_dir_all(&config.log_directory)
            .with_context(|| format!("creating {}", config.log_directory))?;
        let r = self
            .runtime
            .run_pod_sandbox(request(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            }));
        Ok(r.await
            .context("RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn pod_status(&mut self, id: &str) -> anyhow::Result<cri::PodSandboxStatusResponse> {
        let r = self
            .runtime
            .pod_sandbox_status(request(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            }));
        Ok(r.await.context("PodSandboxStatus")?.into_inner())
    }

    pub async fn list_pods(
        &mut self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> anyhow::Result<Vec<cri::PodSandbox>> {
        let r = self
            .runtime
            .list_pod_sandbox(request(cri::ListPodSandboxRequest { filter }));
        Ok(r.await.context("ListPodSandbox")?.into_inner().items)
    }

    pub async fn create_container(
        &mut self,
        pod_id: &str,
        config: &cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> anyhow::Result<String> {
        let dir = Path::new(&pod_config.log_directory).join(&config.log_path);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let r = self
            .runtime
            .create_container(request(cri::CreateContainerRequest {
                pod_sandbox_id: pod_id.into(),
                config: Some(config.clone()),
                sandbox_config: Some(pod_config.clone()),
            }));
        Ok(r.await
            .context("CreateContainer")?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self
            .runtime
            .start_container(request(cri::StartContainerRequest {
                container_id: id.into(),
            }));
        r.await.context("StartContainer")?;
        Ok(())
    }

    pub async fn container_status(&mut self, id: &str) -> anyhow::Result<cri::ContainerStatus> {
        let r = self
            .runtime
            .container_status(request(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }));
        r.await
            .context("ContainerStatus")?
            .into_inner()
            .status
            .context("ContainerStatus without a status")
    }

    /// Polls ContainerStatus until the container is in `state`, as kubelet's PLEG would.
    pub async fn wait_container_state(
        &mut self,
        id: &str,
        state: cri::ContainerState,
        timeout: Duration,
    ) -> anyhow::Result<cri::ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id).await?;
            if status.state == state as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("container {id} not {state:?} after {timeout:?}: {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn list_containers(
        &mut self,
        filter: Option<cri::ContainerFilter>,
    ) -> anyhow::Result<Vec<cri::Container>> {
        let r = self
            .runtime
            .list_containers(request(cri::ListContainersRequest { filter }));
        Ok(r.await.context("ListContainers")?.into_inner().containers)
    }

    /// The containers of one pod.
    pub async fn pod_containers(&mut self, pod_id: &str) -> anyhow::Result<Vec<cri::Container>> {
        self.list_containers(Some(cri::ContainerFilter {
            pod_sandbox_id: pod_id.into(),
            ..Default::default()
        }))
        .await
    }

    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> anyhow::Result<cri::ExecSyncResponse> {
        let r = self.runtime.exec_sync(request(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_seconds,
        }));
        Ok(r.await
            .with_context(|| format!("ExecSync {cmd:?}"))?
            .into_inner())
    }

    pub async fn stop_container(&mut self, id: &str, timeout_seconds: i64) -> anyhow::Result<()> {
        let r = self
            .runtime
            .stop_container(request(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_seconds,
            }));
        r.await.context("StopContainer")?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self
            .runtime
            .remove_container(request(cri::RemoveContainerRequest {
                container_id: id.into(),
            }));
        r.await.context("RemoveContainer")?;
        Ok(())
    }

    pub async fn stop_pod(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self
            .runtime
            .stop_pod_sandbox(request(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }));
        r.await.context("StopPodSandbox")?;
        Ok(())
    }

    pub async fn remove_pod(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self
            .runtime
            .remove_pod_sandbox(request(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }));
        r.await.context("RemovePodSandbox")?;
        Ok(())
    }

    /// RunPodSandbox, then CreateContainer + StartContainer of the counter, then waits
    /// until it is RUNNING.
    pub async fn run_counter_pod(
        &mut self,
        config: &cri::PodSandboxConfig,
        container: &cri::ContainerConfig,
    ) -> anyhow::Result<RunningPod> {
        let pod_id = self.run_pod(config).await?;
        let container_id = self.create_container(&pod_id, container, config).await?;
        self.start_container(&container_id).await?;
        self.wait_container_state(
            &container_id,
            cri::ContainerState::ContainerRunning,
            Duration::from_secs(10),
        )
        .await?;
        Ok(RunningPod {
            log_path: Path::new(&config.log_directory).join(&container.log_path),
            pod_id,
            container_id,
            config: config.clone(),
        })
    }

    /// Takes a pod down the way kubelet does: stop every container, remove them, stop the
    /// sandbox, remove it.
    pub async fn remove_pod_fully(&mut self, pod_id: &str) -> anyhow::Result<()> {
        let containers = self.pod_containers(pod_id).await?;
        for c in &containers {
            self.stop_container(&c.id, 10).await?;
        }
        for c in &containers {
            self.remove_container(&c.id).await?;
        }
        self.stop_pod(pod_id).await?;
        self.remove_pod(pod_id).await
    }
}

/// One line of a CRI container log: `<RFC 3339 time> <stream> <P|F> <content>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    /// `F` (full line) or `P` (partial).
    pub tag: String,
    pub content: String,
}

/// Parses a CRI log file; a line in any other format is an error.
pub fn read_cri_log(path: &Path) -> anyhow::Result<Vec<LogLine>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("not a CRI log line in {}: {line:?}", path.display());
            };
            if !matches!(stream, "stdout" | "stderr") || !matches!(tag, "F" | "P") {
                bail!("not a CRI log line in {}: {line:?}", path.display());
            }
            Ok(LogLine {
                time: time.into(),
                stream: stream.into(),
                tag: tag.into(),
                content: parts.next().unwrap_or("").into(),
            })
        })
        .collect()
}

/// The counter values the container printed on stdout so far.
pub fn counter_values(lines: &[LogLine]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.stream == "stdout")
        .filter_map(|l| l.content.trim().parse().ok())
        .collect()
}

/// Waits until the log holds at least `n` counter values.
pub async fn wait_counter(
    path: &Path,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<LogLine>> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = read_cri_log(path)?;
        if counter_values(&lines).len() >= n {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!(
                "{} has {} counter lines after {timeout:?}, wanted {n}: {lines:?}",
                path.display(),
                counter_values(&lines).len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A name unique to this process and moment, for pod uids and run labels.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}-{:x}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a GetContainerEvents stream gave so far.
enum EventItem {
    Event(Box<cri::ContainerEventResponse>),
    Ended(Result<(), tonic::Status>),
}

/// A GetContainerEvents subscription, read in the background: the call's response headers
/// only come with the first event, so awaiting the call itself would block until then.
pub struct ContainerEvents {
    rx: tokio::sync::mpsc::UnboundedReceiver<EventItem>,
    task: tokio::task::JoinHandle<()>,
    /// Events received and not yet taken.
    pub events: Vec<cri::ContainerEventResponse>,
    /// How the stream ended, once it has.
    pub ended: Option<Result<(), tonic::Status>>,
}

impl Kubelet {
    /// Starts GetContainerEvents (no deadline: kubelet's evented PLEG keeps it open).
    pub fn subscribe_events(&self) -> ContainerEvents {
        let mut runtime = self.runtime.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = match runtime
                .get_container_events(cri::GetEventsRequest::default())
                .await
            {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    let _ = tx.send(EventItem::Ended(Err(status)));
                    return;
                }
            };
            loop {
                let item = match stream.message().await {
                    Ok(Some(event)) => EventItem::Event(Box::new(event)),
                    Ok(None) => EventItem::Ended(Ok(())),
                    Err(status) => EventItem::Ended(Err(status)),
                };
                let last = matches!(item, EventItem::Ended(_));
                if tx.send(item).is_err() || last {
                    return;
                }
            }
        });
        ContainerEvents {
            rx,
            task,
            events: Vec::new(),
            ended: None,
        }
    }
}

impl ContainerEvents {
    fn take(&mut self, item: EventItem) {
        match item {
            EventItem::Event(e) => self.events.push(*e),
            EventItem::Ended(r) => self.ended = Some(r),
        }
    }

    /// Waits up to `timeout` for the stream to end and returns how it ended (containerd 1.6
    /// answers UNIMPLEMENTED at once); None if it is still open.
    pub async fn ended_within(&mut self, timeout: Duration) -> Option<Result<(), tonic::Status>> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(item)) => self.take(item),
                Ok(None) | Err(_) => break,
            }
        }
        self.ended.clone()
    }

    /// Reads events until `done` holds for those received, the stream ends, or `timeout`
    /// passes; returns every event received so far.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        done: impl Fn(&[cri::ContainerEventResponse]) -> bool,
    ) -> &[cri::ContainerEventResponse] {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.ended.is_none() && !done(&self.events) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(item)) => self.take(item),
                Ok(None) | Err(_) => break,
            }
        }
        &self.events
    }
}

impl Drop for ContainerEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}
