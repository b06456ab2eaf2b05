//! The real-runtime test bed (`tests/testbed/testbed`) from Rust: bring a containerd
//! instance up, restart or kill it, and always bring it down again, also when a test panics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The script, found from this crate's own directory.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/testbed")
}

/// Why the real-runtime tests cannot run here, if they cannot.
///
/// `CKPT_E2E=0` turns them off. They need root; without it they are skipped, unless
/// `CKPT_E2E=1` asks for them explicitly, which makes a non-root run fail instead of passing
/// silently.
pub fn skip_reason() -> Option<String> {
    let wanted = std::env::var("CKPT_E2E").ok();
    if wanted.as_deref() == Some("0") {
        return Some("CKPT_E2E=0".into());
    }
    if !nix::unistd::geteuid().is_root() {
        assert_ne!(
            wanted.as_deref(),
            Some("1"),
            "CKPT_E2E=1 but not root: the test bed needs root"
        );
        return Some(
            "not root (the containerd test bed needs root; CKPT_E2E=1 makes this an error)".into(),
        );
    }
    None
}

/// Prints the skip line and returns true when the caller should return at once.
pub fn skip(test: &str) -> bool {
    match skip_reason() {
        Some(reason) => {
            say(&format!("{test}: skipped: {reason}"));
            true
        }
        None => false,
    }
}

/// A line on stderr that the test harness does not capture (it captures `eprintln!`), so
/// skips and timings show in every run.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    run_with(args, &[])
}

fn run_with(args: &[&str], vars: &[(&str, &str)]) -> anyhow::Result<String> {
    let started = Instant::now();
    let out = Command::new(script())
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .with_context(|| format!("running {} {}", script().display(), args.join(" ")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "testbed {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            stderr.trim_end()
        );
    }
    // Captured by the test harness: shown only when the test fails.
    if args[0] != "env" {
        println!(
            "testbed {} ({} ms): {}",
            args.join(" "),
            started.elapsed().as_millis(),
            stderr.lines().last().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Undoes bash's `printf %q` for the values `testbed env` prints.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix("$'").and_then(|v| v.strip_suffix('\'')) {
        return inner.replace("\\'", "'").replace("\\\\", "\\");
    }
    if value == "''" {
        return String::new();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `testbed env NAME` as a map.
pub fn env_of(name: &str) -> anyhow::Result<HashMap<String, String>> {
    let text = run(&["env", name])?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), unquote(v)))
        .collect())
}

/// One containerd instance of the test bed. Dropping it runs `testbed down` unless
/// [`Instance::keep`] was called.
pub struct Instance {
    /// Instance name: `1.6`, `1.7`, `2.1`, optionally with a suffix (`1.6-e2e`).
    pub name: String,
    /// containerd's socket.
    pub socket: PathBuf,
    /// What `testbed env` prints (BUSYBOX_IMAGE, POD_LOG_DIR, CONTAINERD_PIDFILE, ...).
    pub env: HashMap<String, String>,
    armed: bool,
}

impl Instance {
    /// `testbed up NAME`: starts the instance, or reuses it when it is up already.
    pub fn up(name: &str) -> anyhow::Result<Instance> {
        Self::up_with(name, &[])
    }

    /// `up` with test bed settings (`CKPT_TESTBED_*` variables, e.g. the runc wrapper).
    pub fn up_with(name: &str, vars: &[(&str, &str)]) -> anyhow::Result<Instance> {
        recover_dead(name);
        let socket = run_with(&["up", name], vars)?.trim().to_string();
        // Armed from here on: a failure below still brings the instance down.
        let mut instance = Instance {
            name: name.to_string(),
            socket: PathBuf::from(&socket),
            env: HashMap::new(),
            armed: true,
        };
        instance.env = env_of(name)?;
        if instance.get("CONTAINERD_SOCKET") != socket {
            bail!(
                "testbed up printed {socket} but env says {}",
                instance.get("CONTAINERD_SOCKET")
            );
        }
        Ok(instance)
    }

    /// A value from `testbed env`; empty if it has none.
    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or("")
    }

    /// `$CKPT_TESTBED_DIR/run/NAME`: everything of this instance; `down` unmounts all below.
    pub fn dir(&self) -> PathBuf {
        Path::new(self.get("CKPT_TESTBED_DIR"))
            .join("run")
            .join(&self.name)
    }

    /// The cgroup parent for a pod: below the directory `down` cleans up.
    pub fn cgroup_parent(&self, pod: &str) -> String {
        format!("/ckpt-shim-testbed/{}/{pod}", self.name)
    }

    /// containerd's pid, if it runs.
    pub fn containerd_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.get("CONTAINERD_PIDFILE"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    /// SIGKILL to containerd, as a crash would; returns once it is gone. Shims and
    /// containers keep running.
    pub fn kill_containerd(&self) -> anyhow::Result<()> {
        let pid = self.containerd_pid().context("containerd is not running")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            if Instant::now() > deadline {
                bail!("containerd {pid} still alive 10 s after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// `testbed restart NAME`: kill -9 containerd (if it runs) and start it on the same dirs.
    pub fn restart(&self) -> anyhow::Result<()> {
        run(&["restart", &self.name]).map(|_| ())
    }

    /// `testbed down NAME`, then checks that nothing is mounted under the instance and no
    /// containerd shim of it runs.
    pub fn down(mut self) -> anyhow::Result<()> {
        self.armed = false;
        run(&["down", &self.name])?;
        let mounts = mounts_under(&self.dir());
        if !mounts.is_empty() {
            bail!("mounted after down: {mounts:?}");
        }
        let shims = shims_of(&self.socket);
        if !shims.is_empty() {
            bail!("containerd shims still running after down: {shims:?}");
        }
        Ok(())
    }

    /// Leaves the instance up when this value goes away.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.containerd_pid().is_none() {
            // Killed by the test: `down` clears pods best through a live containerd.
            let _ = run(&["restart", &self.name]);
        }
        if let Err(e) = run(&["down", &self.name]) {
            eprintln!("cleaning up test bed {}: {e:#}", self.name);
        }
    }
}

/// A run that died without `down` (the test process was killed) may have left containerd
/// dead with pods and mounts behind, and its `ckpt-shim` children running. Stops those,
/// starts containerd on the old state and takes it down through it, so the next `up` is
/// clean.
fn recover_dead(name: &str) {
    let Ok(env) = env_of(name) else { return };
    let dir = Path::new(
        env.get("CKPT_TESTBED_DIR")
            .map(String::as_str)
            .unwrap_or("/"),
    )
    .join("run")
    .join(name);
    for pid in stale_shim_processes(&dir) {
        eprintln!("stopping ckpt-shim {pid} left behind in {}", dir.display());
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let pidfile = env.get("CONTAINERD_PIDFILE").cloned().unwrap_or_default();
    let pid = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    if let Some(pid) = pid {
        if !alive(pid) && dir.join("config.toml").exists() {
            eprintln!("test bed {name}: containerd died without `down`: cleaning up");
            let _ = run(&["restart", name]);
            let _ = run(&["down", name]);
        }
    }
}

/// Orphaned `ckpt-shim` processes whose command line names a file under `dir`: started by
/// a test or demo of this instance that died without stopping them.
pub fn stale_shim_processes(dir: &Path) -> Vec<i32> {
    let needle = format!("{}/", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first().is_some_and(|a| a.ends_with("/ckpt-shim"))
                && args.iter().any(|a| a.starts_with(&needle))
                && alive(*pid)
                && parent(*pid) == Some(1)
        })
        .collect()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// Mount points at or below `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == dir || mp.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// Processes named containerd-shim* whose command line names `socket`.
pub fn shims_of(socket: &Path) -> Vec<i32> {
    let needle = socket.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first().is_some_and(|a| a.contains("containerd-shim"))
                && args.iter().any(|a| a.contains(&needle))
                && alive(*pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unquote;

    #[test]
    fn printf_q_values() {
        assert_eq!(unquote("/var/lib/x"), "/var/lib/x");
        assert_eq!(
            unquote("/usr/bin/ctr\\ --address\\ /s"),
            "/usr/bin/ctr --address /s"
        );
        assert_eq!(unquote("''"), "");
        assert_eq!(unquote("$'a\\'b'"), "a'b");
    }
}
