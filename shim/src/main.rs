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
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    // Two cores is a common node size; the proxy needs few threads and no blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
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
