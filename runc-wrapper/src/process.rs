//! Process trees from /proc, and killing them: the wrapper's watchdog kills a `runc restore`
//! that hangs, the shim's abort kills a `runc checkpoint` whose time is up.

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

/// A process and its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
}

/// Every process with its parent, from /proc's parent links (processes that exit meanwhile
/// are left out).
pub fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(Proc {
            pid,
            ppid: ppid_in_stat(&stat)?,
        })
    })
    .collect()
}

/// The parent pid in a `/proc/<pid>/stat` line. The command name may hold spaces and
/// parentheses: fields start after the last ')'.
fn ppid_in_stat(stat: &str) -> Option<i32> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
}

/// All processes below `root` in `procs`, parents before their children.
pub fn descendants_in(procs: &[Proc], root: i32) -> Vec<i32> {
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(procs.iter().filter(|c| c.ppid == p).map(|c| c.pid));
        i += 1;
    }
    found.remove(0);
    found
}

/// All processes below `root` now, parents before their children.
pub fn descendants(root: i32) -> Vec<i32> {
    descendants_in(&processes(), root)
}

/// The arguments a process was started with.
pub fn cmdline(pid: i32) -> Vec<String> {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The process's command name.
pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// SIGKILL to one process; a pid that is gone already is no error worth reporting. Never
/// a group or everyone (pid 0 or below).
pub fn kill(pid: i32) {
    if pid > 0 {
        let _ = send(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_and_stat_lines() {
        let p = |pid, ppid| Proc { pid, ppid };
        let procs = [p(1, 0), p(10, 1), p(11, 10), p(12, 10), p(13, 11), p(20, 1)];
        assert_eq!(descendants_in(&procs, 10), [11, 12, 13]);
        assert_eq!(descendants_in(&procs, 13), Vec::<i32>::new());
        assert_eq!(ppid_in_stat("42 (a) b) S 7 42 42 0"), Some(7));
        assert_eq!(ppid_in_stat("garbage"), None);
        let me = std::process::id() as i32;
        assert!(processes().iter().any(|p| p.pid == me));
        assert!(comm(me).is_some());
        assert!(!cmdline(me).is_empty());
    }
}
