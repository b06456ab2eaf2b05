//! `ckpt-shim image build ARCHIVE IMAGE-NAME`: a checkpoint archive as an OCI image, into
//! a layout directory, containerd's image store (`--import`) or a registry (`--push`).

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::layout::{self, Built};
use super::push::{self, PushOptions};
use super::Reference;
use crate::runtime::containerd::Containerd;

#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Build an OCI image of a checkpoint archive (its files in one layer, annotated so
    /// CRI-O, containerd 2.1 and Podman restore from it)
    Build(BuildArgs),
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Checkpoint archive (tar, tar.gz or tar.zst)
    pub archive: PathBuf,
    /// Image name, e.g. registry.example/ckpt/counter:v1 (normalised as containerd does:
    /// `counter` is docker.io/library/counter:latest)
    pub image: String,
    /// OCI layout directory to write [default: <IMAGE-NAME sanitised>.oci, unless
    /// --import or --push]
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Put the image into containerd's image store
    #[arg(long)]
    pub import: bool,
    /// Push the image to its registry
    #[arg(long)]
    pub push: bool,
    /// containerd's socket (--import)
    #[arg(
        long,
        value_name = "ENDPOINT",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub containerd: String,
    /// containerd namespace (--import); CRI's is k8s.io
    #[arg(long, default_value = "k8s.io")]
    pub namespace: String,
    /// Also unpack the layer into this snapshotter (--import); containerd 2.1's CRI
    /// restore mounts the image's snapshot. "" to skip
    #[arg(long, value_name = "NAME", default_value = "overlayfs")]
    pub snapshotter: String,
    /// Talk to the registry over plain HTTP (local registries)
    #[arg(long, visible_alias = "insecure")]
    pub plain_http: bool,
    /// Registry user name [default: the container tools' auth files: REGISTRY_AUTH_FILE,
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json]
    #[arg(long, env = "CKPT_REGISTRY_USERNAME", value_name = "USER")]
    pub username: Option<String>,
    /// Registry password (visible in ps: prefer --password-stdin)
    #[arg(
        long,
        env = "CKPT_REGISTRY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        conflicts_with = "password_stdin"
    )]
    pub password: Option<String>,
    /// Read the registry password from standard input
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(command: ImageCommand) -> ExitCode {
    let ImageCommand::Build(args) = command;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ckpt-shim: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(build(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckpt-shim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn socket_path(endpoint: &str) -> anyhow::Result<PathBuf> {
    match endpoint.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        _ if endpoint.starts_with('/') => Ok(PathBuf::from(endpoint)),
        _ => bail!("--containerd {endpoint:?}: give unix:///PATH"),
    }
}

fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Removes a temporary layout when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn build(mut args: BuildArgs) -> anyhow::Result<()> {
    let name = Reference::parse(&args.image)?;
    if name.digest.is_some() {
        bail!(
            "image name {:?}: give a tag, not a digest (the digest comes from the build)",
            args.image
        );
    }
    if args.password_stdin {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .context("reading the password from standard input")?;
        args.password = Some(password.trim_end_matches(['\r', '\n']).to_owned());
    }
    let keep = args.output.is_some() || !(args.import || args.push);
    let (out, _cleanup) = match &args.output {
        Some(dir) => (dir.clone(), None),
        None if keep => (PathBuf::from(name.sanitised()), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "ckpt-shim-image-{}-{}",
                std::process::id(),
                ckpt_format::time::unix_nanos(std::time::SystemTime::now())
            ));
            (dir.clone(), Some(TempDir(dir)))
        }
    };
    let started = std::time::Instant::now();
    let archive = args.archive.clone();
    let (name2, out2) = (name.clone(), out.clone());
    let built: Built =
        tokio::task::spawn_blocking(move || layout::build(&archive, &name2, &out2, true))
            .await
            .context("the build task failed")??;
    eprintln!(
        "built {} from {} ({} members, layer {} bytes) in {:.2} s",
        name,
        args.archive.display(),
        built.members,
        built.layer.size,
        started.elapsed().as_secs_f64()
    );
    if keep {
        println!("{}", out.display());
    }
    if args.import {
        let socket = socket_path(&args.containerd)?;
        let total: u64 = built.blobs().iter().map(|d| d.size).sum();
        let progress = bar(total, "import");
        let snapshotter = Some(args.snapshotter.as_str()).filter(|s| !s.is_empty());
        let containerd = Containerd::new(crate::runtime::channel(&socket), &args.namespace)?;
        super::store::import(containerd, &built, snapshotter, &progress)
            .await
            .with_context(|| format!("importing into containerd at {}", socket.display()))?;
        progress.finish_and_clear();
        eprintln!(
            "imported into containerd ({}, namespace {}{})",
            socket.display(),
            args.namespace,
            snapshotter
                .map(|s| format!(", unpacked into {s}"))
                .unwrap_or_default()
        );
        println!("{name}@{}", built.index.digest);
    }
    if args.push {
        if args.username.is_none() {
            if let Some((user, pass, file)) = push::stored_credentials(&name.domain) {
                eprintln!(
                    "using the credentials for {} in {}",
                    name.domain,
                    file.display()
                );
                args.username = Some(user);
                args.password = Some(pass);
            }
        }
        let total = built.layer.size + built.config.size;
        let progress = bar(total, "push");
        let pushed = push::push(
            &built,
            &name,
            PushOptions {
                plain_http: args.plain_http,
                username: args.username.clone(),
                password: args.password.clone(),
            },
            &progress,
        )
        .await
        .with_context(|| format!("pushing {name}"))?;
        progress.finish_and_clear();
        eprintln!(
            "pushed {} blob(s), {} bytes ({} already there)",
            pushed.blobs_uploaded, pushed.bytes_uploaded, pushed.blobs_present
        );
        println!("{}", pushed.reference);
    }
    Ok(())
}
