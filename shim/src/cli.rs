//! Node-admin commands that talk to a running shim or read its files:
//! `ckpt-shim checkpoint` (what kubelet's checkpoint endpoint does, without kubelet) and
//! `ckpt-shim audit verify|show`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

use crate::api::cri::{
    CheckpointContainerRequest, ContainerFilter, ContainerState, ContainerStateValue,
    ListContainersRequest, ListPodSandboxRequest, PodSandboxState,
};
use crate::audit::show::{parse_since, show, Filter};
use crate::config::Config;

/// Checkpoints NAMESPACE/POD/CONTAINER through the shim's socket; prints the archive's path
/// and digest. Returns the archive path.
pub async fn checkpoint(
    config: &Config,
    target: &str,
    out: Option<PathBuf>,
    timeout: u64,
) -> anyhow::Result<PathBuf> {
    let mut parts = target.splitn(3, '/');
    let (Some(ns), Some(pod), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        bail!("{target:?} is not NAMESPACE/POD/CONTAINER");
    };
    let mut cri = crate::runtime::cri(&config.listen);
    // Pod by its sandbox metadata (what kubelet's URL names), then the container in it.
    let sandboxes = cri
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .with_context(|| format!("listing pods through {}", config.listen.display()))?
        .into_inner()
        .items;
    let mut found = Vec::new();
    for sandbox in sandboxes.iter().filter(|s| {
        s.state == PodSandboxState::SandboxReady as i32
            && s.metadata
                .as_ref()
                .is_some_and(|m| m.name == pod && m.namespace == ns)
    }) {
        let containers = cri
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    state: Some(ContainerStateValue {
                        state: ContainerState::ContainerRunning as i32,
                    }),
                    pod_sandbox_id: sandbox.id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .context("listing containers")?
            .into_inner()
            .containers;
        found.extend(
            containers
                .into_iter()
                .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == name)),
        );
    }
    let container = match found.as_slice() {
        [one] => one,
        [] => bail!("no running container {name} in pod {ns}/{pod}"),
        more => bail!("{} running containers match {target}", more.len()),
    };
    let out = match out {
        Some(p) => p,
        None => {
            let dir = config
                .checkpoint
                .allowed_dirs
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/var/lib/kubelet/checkpoints"));
            let when = ckpt_format::time::rfc3339(SystemTime::now());
            dir.join(format!("checkpoint-{pod}_{ns}-{name}-{}.tar", &when[..19]))
        }
    };
    let out = if out.is_absolute() {
        out
    } else {
        std::env::current_dir()?.join(out)
    };
    eprintln!(
        "checkpointing {target} (container {}) to {}",
        &container.id[..container.id.len().min(13)],
        out.display()
    );
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            eprintln!("  ... {:.0} s", started.elapsed().as_secs_f64());
        }
    });
    let result = cri
        .checkpoint_container(CheckpointContainerRequest {
            container_id: container.id.clone(),
            location: out.display().to_string(),
            timeout: timeout as i64,
        })
        .await;
    ticker.abort();
    result.map_err(|s| anyhow::anyhow!("checkpoint failed: {:?}: {}", s.code(), s.message()))?;
    let digest = ckpt_format::sidecar::Sidecar::read(&out)
        .map(|s| format!("sha256:{} ({} bytes)", s.sha256, s.size))
        .unwrap_or_else(|_| "(no sidecar)".into());
    eprintln!("done in {:.2} s", started.elapsed().as_secs_f64());
    println!("{}\n{digest}", out.display());
    Ok(out)
}

fn audit_path(config: &Config, path: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    path.or_else(|| config.checkpoint.audit_log.clone())
        .context("no audit log: give a PATH or set checkpoint.audit_log")
}

pub fn audit_verify(config: &Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let path = audit_path(config, path)?;
    let file = open(&path)?;
    match crate::audit::verify(BufReader::new(file)) {
        Ok(n) => {
            println!("{}: {n} records, chain intact", path.display());
            Ok(())
        }
        Err(b) => bail!(
            "{}: record {} is broken: {}",
            path.display(),
            b.line,
            b.reason
        ),
    }
}

pub fn audit_show(
    config: &Config,
    path: Option<PathBuf>,
    pod: Option<String>,
    namespace: Option<String>,
    since: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let path = audit_path(config, path)?;
    let since = match since {
        Some(s) => Some(
            parse_since(&s, SystemTime::now())
                .with_context(|| format!("--since {s:?}: give RFC 3339 or an age like 2h"))?,
        ),
        None => None,
    };
    let filter = Filter {
        pod,
        namespace,
        since,
    };
    let mut stdout = std::io::stdout().lock();
    show(BufReader::new(open(&path)?), &filter, json, &mut stdout)?;
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))
}
