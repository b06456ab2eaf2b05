//! Helpers shared by the checkpoint, restore and image tests and the checkpoint and restore
//! benchmarks: a test-bed instance that is brought down when dropped, a shim in front of it
//! with a [checkpoint] section, and a CRI pod with a counter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ckpt_shim::api::cri::runtime_service_client::RuntimeServiceClient;
use ckpt_shim::api::cri::*;
use tonic::transport::Channel;

use crate::shim::{Options, Shim};
pub use crate::testbed::{say, script};

/// Why the test cannot run here, printed by the caller.
pub fn skip() -> Option<&'static str> {
    if std::env::var("CKPT_E2E").as_deref() == Ok("0") {
        return Some("CKPT_E2E=0");
    }
    (!nix::unistd::geteuid().is_root()).then_some("not root (the containerd test bed needs root)")
}

/// One containerd instance of the test bed, up while this lives.
pub struct Bed {
    pub instance: String,
    pub socket: PathBuf,
    pub env: HashMap<String, String>,
}

impl Bed {
    pub fn up(instance: &str) -> Bed {
        Self::up_with(instance, &[])
    }

    /// An instance started with extra testbed settings (CKPT_TESTBED_* variables).
    pub fn up_with(instance: &str, vars: &[(&str, &str)]) -> Bed {
        let out = Command::new(script())
            .args(["up", instance])
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "testbed up {instance}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let out = Command::new(script())
            .args(["env", instance])
            .output()
            .unwrap();
        let env = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.replace("\\ ", " ")))
            .collect();
        Bed {
            instance: instance.to_owned(),
            socket,
            env,
        }
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or("")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::env::var_os("CKPT_KEEP_BED").is_none() {
            let _ = Command::new(script())
                .args(["down", &self.instance])
                .output();
        }
    }
}

/// Directories for one test: archives, staging, failed logs, audit.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Default for Dirs {
    fn default() -> Self {
        Self::new()
    }
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::Builder::new()
            .prefix("ckpt-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        std::fs::create_dir_all(root.path().join("checkpoints")).unwrap();
        Dirs { root }
    }
    pub fn archives(&self) -> PathBuf {
        self.root.path().join("checkpoints")
    }
    pub fn audit(&self) -> PathBuf {
        self.root.path().join("audit/audit.jsonl")
    }
}

pub async fn shim(bed: &Bed, dirs: &Dirs, extra: &str) -> Shim {
    let root = dirs.root.path();
    let checkpoint = format!(
        "\n[checkpoint]\nallowed_dirs = [\"{}\"]\nwork_dir = \"{}\"\nfailed_log_dir = \"{}\"\naudit_log = \"{}\"\ndenied_namespaces = [\"forbidden\"]\n{extra}\n",
        dirs.archives().display(),
        root.join("work").display(),
        root.join("failed").display(),
        dirs.audit().display(),
    );
    Shim::start(
        root,
        &bed.socket,
        Options {
            runtime: checkpoint,
            log_level: Some("info".into()),
            ..Default::default()
        },
    )
    .await
}

pub type Cri = RuntimeServiceClient<Channel>;

pub async fn cri(socket: &Path) -> Cri {
    RuntimeServiceClient::new(crate::raw::channel(socket).await.unwrap())
}

pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
    pub log_dir: PathBuf,
}

pub async fn pod(cri: &mut Cri, bed: &Bed, name: &str, namespace: &str) -> Pod {
    let unique = format!("{name}-{}-{}", std::process::id(), rand_suffix());
    let log_dir = Path::new(bed.var("POD_LOG_DIR")).join(&unique);
    std::fs::create_dir_all(&log_dir).unwrap();
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: unique.clone(),
            namespace: namespace.into(),
            attempt: 0,
        }),
        log_directory: log_dir.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/ckpt-shim-testbed/{}/{unique}", bed.instance),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = cri
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    Pod {
        id,
        config,
        log_dir,
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// CreateContainer in `pod` as the tests send it; an empty `command` keeps the image's.
pub fn create_request(
    pod: &Pod,
    name: &str,
    image: &str,
    command: &[&str],
    annotations: &[(&str, &str)],
) -> CreateContainerRequest {
    CreateContainerRequest {
        pod_sandbox_id: pod.id.clone(),
        config: Some(ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|c| c.to_string()).collect(),
            log_path: format!("{name}.log"),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext::default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        sandbox_config: Some(pod.config.clone()),
    }
}

/// Creates and starts a container; returns its id and log file.
pub async fn container(
    cri: &mut Cri,
    bed: &Bed,
    pod: &Pod,
    name: &str,
    script: &str,
    annotations: &[(&str, &str)],
) -> (String, PathBuf) {
    let request = create_request(
        pod,
        name,
        bed.var("BUSYBOX_IMAGE"),
        &["sh", "-c", script],
        annotations,
    );
    let id = cri
        .create_container(request)
        .await
        .unwrap()
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    (id, pod.log_dir.join(format!("{name}.log")))
}

/// The numbers the counter printed (CRI log lines end with the message).
pub fn counts(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

pub async fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn state(cri: &mut Cri, id: &str) -> i32 {
    cri.container_status(ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .status
    .unwrap()
    .state
}

pub async fn remove_pod(cri: &mut Cri, pod: &Pod) {
    let _ = cri
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await;
    let _ = cri
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await;
}

pub async fn checkpoint(
    cri: &mut Cri,
    id: &str,
    location: &Path,
    timeout: i64,
) -> Result<(), tonic::Status> {
    cri.checkpoint_container(CheckpointContainerRequest {
        container_id: id.into(),
        location: location.display().to_string(),
        timeout,
    })
    .await
    .map(|_| ())
}
