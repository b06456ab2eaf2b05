//! `ckpt-shim-runc`: containerd's runc shim is configured to run this instead of runc
//! (`BinaryName`). Every call goes to the real runc by `exec`, untouched, except two:
//!
//! - `create` of a container whose spec carries the restore annotation: the staged
//!   checkpoint's filesystem changes are applied to the bundle's rootfs and
//!   `runc restore --detach` runs in place of `runc create`, with the same global flags and
//!   stdio (runc maps the checkpoint's stdio pipes onto the new ones), under a watchdog;
//! - `start` of a container restored that way: the process already runs, nothing to do.
//!
//! While `create` runs, stdout and stderr are the container's log, so the wrapper prints
//! nothing there: errors go to runc's `--log` file, which containerd reports back.

use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ckpt_format::plan::{self, Outcome, Plan};
use ckpt_format::spec_dump::{keys, Spec};

use crate::process::{comm, descendants, kill};
use crate::staged::unmount_under;

/// runc's global flags that take a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["--root", "--log", "--log-format", "--criu", "--rootless"];
/// runc create's flags that take a value.
const CREATE_VALUE_FLAGS: &[&str] = &[
    "--bundle",
    "-b",
    "--console-socket",
    "--pid-file",
    "--preserve-fds",
];
/// Default state root of runc run as root.
const DEFAULT_RUNC_ROOT: &str = "/run/runc";
/// The largest single file a staged rootfs diff may hold (the shim checked it already).
const MAX_ENTRY: u64 = 1 << 40;

/// The command line, split where runc splits it.
#[derive(Debug, Default, PartialEq)]
struct Line {
    global: Vec<OsString>,
    command: Option<String>,
    rest: Vec<OsString>,
}

fn split(args: &[OsString]) -> Line {
    let mut line = Line::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if !a.starts_with('-') {
            line.command = Some(a.into_owned());
            line.rest = args[i + 1..].to_vec();
            break;
        }
        line.global.push(args[i].clone());
        if GLOBAL_VALUE_FLAGS.contains(&a.as_ref()) && i + 1 < args.len() {
            line.global.push(args[i + 1].clone());
            i += 1;
        }
        i += 1;
    }
    line
}

/// The value of `--name V` / `--name=V` among `args`.
fn value_of(args: &[OsString], names: &[&str]) -> Option<OsString> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if let Some((n, v)) = a.split_once('=') {
            if names.contains(&n) {
                return Some(OsString::from(v));
            }
        } else if names.contains(&a.as_ref()) {
            return args.get(i + 1).cloned();
        }
        i += 1;
    }
    None
}

/// The container id: the first argument that is neither a flag nor a flag's value.
fn container_id(args: &[OsString], value_flags: &[&str]) -> Option<String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a.starts_with('-') {
            if value_flags.contains(&a.as_ref()) {
                i += 1;
            }
        } else {
            return Some(a.into_owned());
        }
        i += 1;
    }
    None
}

/// The runc this wrapper stands in for: `$CKPT_SHIM_RUNC`, else the first `runc` on PATH
/// that is not this program.
pub fn real_runc() -> PathBuf {
    if let Some(p) = std::env::var_os("CKPT_SHIM_RUNC") {
        return PathBuf::from(p);
    }
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("runc");
        if candidate.is_file() && candidate.canonicalize().ok() != me {
            return candidate;
        }
    }
    PathBuf::from("/usr/sbin/runc")
}

/// Runs the wrapper; returns the exit code (or never returns, having exec'd runc).
pub fn run(args: Vec<OsString>) -> i32 {
    let runc = real_runc();
    let line = split(&args);
    match line.command.as_deref() {
        Some("create") => {
            if let Some(restore) = restore_for(&line) {
                return restore.run(&runc, &line);
            }
        }
        Some("start") => {
            if let Some(id) = container_id(&line.rest, &[]) {
                if state_dir(&line, &id).join(plan::RESTORED_MARK).exists() {
                    return 0;
                }
            }
        }
        _ => {}
    }
    let err = Command::new(&runc).args(&args).exec();
    let _ = writeln!(
        io::stderr(),
        "ckpt-shim-runc: cannot run {}: {err}",
        runc.display()
    );
    127
}

fn state_dir(line: &Line, id: &str) -> PathBuf {
    let root = value_of(&line.global, &["--root"]).unwrap_or_else(|| DEFAULT_RUNC_ROOT.into());
    Path::new(&root).join(id)
}

struct Restore {
    id: String,
    bundle: PathBuf,
    spec: Spec,
    dir: PathBuf,
}

/// The restore a `create` asks for, if its spec carries the annotation. A sandbox's spec is
/// never one (pod annotations reach the pause container too).
fn restore_for(line: &Line) -> Option<Restore> {
    let bundle = value_of(&line.rest, &["--bundle", "-b"])
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())?;
    let id = container_id(&line.rest, CREATE_VALUE_FLAGS)?;
    let text = std::fs::read(bundle.join("config.json")).ok()?;
    // Cheap test first: most creates are not restores.
    memchr::memmem::find(&text, plan::ANNOTATION.as_bytes())?;
    let spec = Spec::from_slice(&text).ok()?;
    if spec.get(keys::CONTAINER_TYPE) == Some("sandbox") {
        return None;
    }
    let dir = PathBuf::from(spec.get(plan::ANNOTATION)?);
    Some(Restore {
        id,
        bundle,
        spec,
        dir,
    })
}

impl Restore {
    fn run(&self, runc: &Path, line: &Line) -> i32 {
        let started = Instant::now();
        match self.restore(runc, line) {
            Ok(outcome) => {
                let _ = std::fs::write(state_dir(line, &self.id).join(plan::RESTORED_MARK), b"");
                let _ = write_atomic(
                    &plan::result_path(&self.dir),
                    &serde_json::to_vec(&outcome).unwrap_or_default(),
                );
                0
            }
            Err(why) => {
                let message = format!(
                    "ckpt-shim: restore of container {} from {} failed after {} ms: {why}",
                    self.id,
                    self.dir.display(),
                    started.elapsed().as_millis()
                );
                let _ = std::fs::write(self.dir.join(plan::ERROR_FILE), &message);
                log_error(line, &message);
                1
            }
        }
    }

    fn restore(&self, runc: &Path, line: &Line) -> Result<Outcome, String> {
        let plan = self.trusted_plan()?;
        let rootfs = self.bundle.join(self.spec.root_path());
        let t0 = Instant::now();
        crate::rootfs::apply(&rootfs, &self.dir, MAX_ENTRY)
            .map_err(|e| format!("applying the checkpoint's filesystem changes: {e}"))?;
        let rootfs_ms = t0.elapsed().as_millis() as u64;

        let work = self.dir.join(plan::WORK_DIR);
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let mut cmd = Command::new(runc);
        cmd.args(&line.global)
            .arg("restore")
            .args(["--detach", "--no-subreaper"]);
        cmd.arg("--image-path").arg(self.dir.join(plan::IMAGES_DIR));
        cmd.arg("--work-path").arg(&work);
        cmd.arg("--bundle").arg(&self.bundle);
        for (flag, names) in [
            ("--pid-file", &["--pid-file"][..]),
            ("--console-socket", &["--console-socket"][..]),
        ] {
            if let Some(v) = value_of(&line.rest, names) {
                cmd.arg(flag).arg(v);
            }
        }
        if line.rest.iter().any(|a| a == OsStr::new("--no-pivot")) {
            cmd.arg("--no-pivot");
        }
        for o in &plan.criu_options {
            match o.as_str() {
                "tcp-established" => cmd.arg("--tcp-established"),
                "file-locks" => cmd.arg("--file-locks"),
                "external-unix-sockets" => cmd.arg("--ext-unix-sk"),
                "shell-job" => cmd.arg("--shell-job"),
                _ => &mut cmd,
            };
        }
        cmd.arg(&self.id);
        let t1 = Instant::now();
        let status =
            watched(cmd, Duration::from_secs(plan.watchdog_seconds.max(1))).inspect_err(|_| {
                unmount_under(&work);
            })?;
        let restore_ms = t1.elapsed().as_millis() as u64;
        if !status.success() {
            // A CRIU the watchdog killed leaves its cgroup yard mounted in the work directory.
            unmount_under(&work);
            // runc removes its state on a failed restore; make sure, so the container can go.
            let _ = Command::new(runc)
                .args(&line.global)
                .args(["delete", "--force"])
                .arg(&self.id)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
            return Err(format!(
                "runc restore {status}{}",
                criu_error(&work.join(plan::RESTORE_LOG))
            ));
        }
        let pid = value_of(&line.rest, &["--pid-file"])
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        Ok(Outcome {
            container_id: self.id.clone(),
            pid,
            rootfs_ms,
            restore_ms,
        })
    }

    /// The plan, if the directory is the shim's: root's, not writable by others, made for
    /// this sandbox and container name, and not used before.
    fn trusted_plan(&self) -> Result<Plan, String> {
        if !self.dir.is_absolute() {
            return Err(format!("{} is not an absolute path", self.dir.display()));
        }
        for path in [self.dir.clone(), plan::plan_path(&self.dir)] {
            let m =
                std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if m.file_type().is_symlink() || m.uid() != 0 || m.mode() & 0o022 != 0 {
                return Err(format!(
                    "{} is not a staged checkpoint of the shim (owner, mode or symlink)",
                    path.display()
                ));
            }
        }
        let text = std::fs::read(plan::plan_path(&self.dir)).map_err(|e| e.to_string())?;
        let plan: Plan = serde_json::from_slice(&text).map_err(|e| format!("restore.json: {e}"))?;
        let sandbox = self.spec.get(keys::SANDBOX_ID).unwrap_or("");
        let name = self.spec.get(keys::CONTAINER_NAME[0]).unwrap_or("");
        if sandbox != plan.sandbox_id || name != plan.container_name {
            return Err(format!(
                "the staged checkpoint is for container {:?} in sandbox {}, not {name:?} in {sandbox}",
                plan.container_name, plan.sandbox_id
            ));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.dir.join(plan::CLAIMED_FILE))
            .and_then(|mut f| f.write_all(self.id.as_bytes()))
            .map_err(|e| format!("the staged checkpoint was used already ({e})"))?;
        Ok(plan)
    }
}

/// Runs `cmd`; past `limit`, kills what it restored so CRIU gives up and cleans up (a
/// corrupt image can make CRIU's restorer spin for ever), then everything it started.
fn watched(mut cmd: Command, limit: Duration) -> Result<ExitStatus, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run runc restore: {e}"))?;
    let pid = child.id() as i32;
    let (done, wait) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if wait.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
            return false;
        }
        // First the restored tasks (everything under criu but criu), so CRIU sees them die
        // and unwinds; then whatever is left.
        let tree = descendants(pid);
        for &p in tree.iter().filter(|&&p| comm(p).as_deref() != Some("criu")) {
            kill(p);
        }
        if wait.recv_timeout(Duration::from_secs(5)).is_ok() {
            return true;
        }
        for p in descendants(pid) {
            kill(p);
        }
        kill(pid);
        true
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for runc restore: {e}"));
    let _ = done.send(());
    let fired = watchdog.join().unwrap_or(false);
    if fired {
        return Err(format!(
            "runc restore did not finish within the {} s watchdog (restore.watchdog_seconds); the half-restored processes were killed",
            limit.as_secs()
        ));
    }
    status
}

/// The last error CRIU logged (earlier ones are often harmless, such as rlimit), for the
/// message containerd shows.
fn criu_error(log: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::new();
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") && !l.contains("RLIMIT_NOFILE"))
        .map(str::trim)
        .collect();
    match errors.as_slice() {
        [] => String::new(),
        [only] => format!("; CRIU: {only} (log: {})", log.display()),
        [first, .., last] => format!("; CRIU: {first} ... {last} (log: {})", log.display()),
    }
}

/// Appends the error to runc's `--log` in the format asked for; containerd reads the last
/// error line from there.
fn log_error(line: &Line, message: &str) {
    let Some(log) = value_of(&line.global, &["--log"]) else {
        let _ = writeln!(io::stderr(), "{message}");
        return;
    };
    let json = value_of(&line.global, &["--log-format"]).is_some_and(|f| f == "json");
    let time = ckpt_format::time::rfc3339(std::time::SystemTime::now());
    let entry = if json {
        serde_json::json!({"level": "error", "msg": message, "time": time}).to_string()
    } else {
        format!("time=\"{time}\" level=error msg={message:?}")
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(Path::new(&log))
    {
        let _ = writeln!(f, "{entry}");
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn splits_what_containerd_passes() {
        let line = split(&os(&[
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/b/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--console-socket=/tmp/s",
            "abc",
        ]));
        assert_eq!(line.command.as_deref(), Some("create"));
        assert_eq!(line.global.len(), 7);
        assert_eq!(
            container_id(&line.rest, CREATE_VALUE_FLAGS).as_deref(),
            Some("abc")
        );
        assert_eq!(
            value_of(&line.rest, &["--console-socket"]),
            Some(OsString::from("/tmp/s"))
        );
        assert_eq!(
            state_dir(&line, "abc"),
            PathBuf::from("/run/containerd/runc/k8s.io/abc")
        );
    }

    #[test]
    fn start_and_flags_with_equals() {
        let line = split(&os(&["--root=/r", "start", "xyz"]));
        assert_eq!(line.command.as_deref(), Some("start"));
        assert_eq!(container_id(&line.rest, &[]).as_deref(), Some("xyz"));
        assert_eq!(state_dir(&line, "xyz"), PathBuf::from("/r/xyz"));
    }
}
