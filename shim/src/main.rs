#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ckpt_shim::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "ckpt-shim",
    version,
    about = "CRI proxy adding checkpoint/restore to containerd and CRI-O"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Configuration file [default: /etc/ckpt-shim/config.toml if it exists]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Socket to serve on, e.g. unix:///run/ckpt-shim/ckpt-shim.sock
    #[arg(long, value_name = "ENDPOINT")]
    listen: Option<String>,
    /// The real runtime, e.g. unix:///run/containerd/containerd.sock
    #[arg(long, value_name = "ENDPOINT")]
    runtime_endpoint: Option<String>,
    /// trace | debug | info | warn | error, or tracing directives
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// auto | text | json
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, ckpt_shim::config::ConfigError> {
        let overrides = Overrides {
            listen: self.listen.clone(),
            runtime_endpoint: self.runtime_endpoint.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format.clone(),
        };
        Config::load(self.config.as_deref(), &overrides)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy daemon (what systemd starts)
    Serve(ConfigArgs),
    /// Check the configuration file and print the settings it results in
    CheckConfig(ConfigArgs),
    /// Show what a checkpoint archive holds (container, processes, files, sockets, mounts)
    Inspect(ckpt_shim::inspect::show::Args),
    /// List checkpoint archives and check their digests against their sidecars
    List(ckpt_shim::inspect::list::Args),
    /// Search or summarise the memory of a checkpoint's processes
    Memparse(ckpt_shim::inspect::memparse::Args),
    /// What changed between two checkpoints of one container
    Diff(ckpt_shim::inspect::diff::Args),
    /// Checkpoint a container through the shim's socket, as kubelet's endpoint would
    Checkpoint {
        /// NAMESPACE/POD/CONTAINER
        target: String,
        /// Archive path [default: first checkpoint.allowed_dirs entry, kubelet's naming]
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Abort (leaving nothing behind) after this many seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Checkpoint images: build an OCI image of a checkpoint archive, import or push it
    Image {
        #[command(subcommand)]
        command: ckpt_shim::image::command::ImageCommand,
    },
    /// The checkpoint audit log
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names the first broken record
    Verify {
        /// Audit log [default: checkpoint.audit_log]
        path: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print records, optionally filtered
    Show {
        /// Audit log [default: checkpoint.audit_log]
        path: Option<PathBuf>,
        #[arg(long)]
        pod: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
        /// RFC 3339 time or an age (90s, 15m, 2h, 7d)
        #[arg(long)]
        since: Option<String>,
        /// The records as JSON lines
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

fn load_or_exit(args: &ConfigArgs) -> Result<Config, ExitCode> {
    args.load().map_err(|e| {
        eprintln!("ckpt-shim: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckpt-shim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match args.load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("ckpt-shim: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Err(e) = ckpt_shim::logging::init(&config.log_level, config.log_format) {
                eprintln!("ckpt-shim: {e:#}");
                return ExitCode::from(2);
            }
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("ckpt-shim: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Checkpoint {
            target,
            out,
            timeout,
            config,
        } => {
            let config = match load_or_exit(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => return finish(Err(e.into())),
            };
            finish(
                runtime
                    .block_on(ckpt_shim::cli::checkpoint(&config, &target, out, timeout))
                    .map(|_| ()),
            )
        }
        Command::Audit { command } => match command {
            AuditCommand::Verify { path, config } => match load_or_exit(&config) {
                Ok(c) => finish(ckpt_shim::cli::audit_verify(&c, path)),
                Err(code) => code,
            },
            AuditCommand::Show {
                path,
                pod,
                namespace,
                since,
                json,
                config,
            } => match load_or_exit(&config) {
                Ok(c) => finish(ckpt_shim::cli::audit_show(
                    &c, path, pod, namespace, since, json,
                )),
                Err(code) => code,
            },
        },
        Command::CheckConfig(args) => match args.load() {
            Ok(c) => {
                println!("{c:#?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ckpt-shim: configuration error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Inspect(args) => ckpt_shim::inspect::show::run(args),
        Command::List(args) => ckpt_shim::inspect::list::run(args),
        Command::Memparse(args) => ckpt_shim::inspect::memparse::run(args),
        Command::Diff(args) => ckpt_shim::inspect::diff::run(args),
        Command::Image { command } => ckpt_shim::image::command::run(command),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    // One event loop by default: relaying is cheap per call, and on a single thread no call
    // pays for waking another thread (measured: about a quarter less added latency).
    let runtime = if config.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async move {
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "stopping");
            ckpt_shim::systemd::notify_stopping();
        };
        ckpt_shim::server::serve(config, shutdown, ckpt_shim::systemd::notify_ready).await
    })
}
