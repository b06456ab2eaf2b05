//! Runs the real `ckpt-shim` binary as a child process, the way systemd would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The built binary: `CKPT_SHIM_BIN`, or `ckpt-shim` next to the test's own target dir.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CKPT_SHIM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/ckpt-shim
    let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = profile_dir.join("ckpt-shim");
    assert!(
        bin.exists(),
        "{} not found: build it first (`cargo build -p ckpt-shim`) or set CKPT_SHIM_BIN",
        bin.display()
    );
    bin
}

pub struct Shim {
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

/// Settings a test may change; the rest are the shim's defaults.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra `key = value` lines for the [server] section.
    pub server: String,
    /// Extra lines for the [runtime] section.
    pub runtime: String,
    pub log_level: Option<String>,
}

impl Shim {
    pub fn config_text(socket: &Path, runtime: &Path, options: &Options) -> String {
        format!(
            "[server]\nlisten = \"unix://{}\"\nshutdown_grace_seconds = 5\n{}\n[runtime]\nendpoint = \"unix://{}\"\n{}\n[log]\nlevel = \"{}\"\nformat = \"json\"\n",
            socket.display(),
            options.server,
            runtime.display(),
            options.runtime,
            options.log_level.as_deref().unwrap_or("debug"),
        )
    }

    /// Starts the shim in `dir` in front of `runtime` and waits until its socket accepts.
    pub async fn start(dir: &Path, runtime: &Path, options: Options) -> Shim {
        let socket = dir.join("shim.sock");
        let config = dir.join("config.toml");
        std::fs::write(&config, Self::config_text(&socket, runtime, &options)).unwrap();
        let log = dir.join("shim.log");
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ckpt-shim");
        let mut shim = Shim {
            socket,
            config,
            log,
            child: Some(child),
        };
        shim.wait_ready().await;
        shim
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "ckpt-shim exited ({status}) before serving:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ckpt-shim did not serve in time:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
