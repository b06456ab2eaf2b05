//! Stopping a checkpoint whose time is up, and making sure the container is not left frozen.
//!
//! A cancelled gRPC call does not stop runc: containerd's shim runs `runc checkpoint` to the
//! end. So the shim finds that runc (its arguments end with the container id after a
//! `checkpoint` subcommand) and kills it and everything under it (CRIU), CRIU first. CRIU
//! freezes the container's cgroup while it dumps and a killed CRIU cannot thaw it, so the
//! task is then resumed if containerd reports it paused.

#![forbid(unsafe_code)]

use std::time::Duration;

use ckpt_shim_runc::process;

use crate::runtime::containerd::{Containerd, TaskState};

/// Kills the `runc checkpoint` of `container_id` and its descendants; returns how many
/// processes were signalled.
pub fn kill_dump(container_id: &str) -> usize {
    let procs = process::processes();
    let runcs: Vec<i32> = procs
        .iter()
        .filter(|p| is_runc_checkpoint(&process::cmdline(p.pid), container_id))
        .map(|p| p.pid)
        .collect();
    let mut victims = Vec::new();
    for runc in &runcs {
        victims.extend(process::descendants_in(&procs, *runc));
    }
    // Deepest first (CRIU before runc), so runc sees CRIU die rather than the reverse.
    victims.reverse();
    victims.extend(runcs);
    for pid in &victims {
        process::kill(*pid);
    }
    victims.len()
}

fn is_runc_checkpoint(args: &[String], container_id: &str) -> bool {
    let is_runc = args
        .first()
        .is_some_and(|a| a.rsplit('/').next().is_some_and(|b| b.starts_with("runc")));
    is_runc
        && args.iter().any(|a| a == "checkpoint")
        && args.last().is_some_and(|a| a == container_id)
}

/// Resumes the task if it is paused (a killed CRIU leaves its cgroup frozen). Tries for a
/// few seconds, since runc may still be exiting. Returns the last state seen.
pub async fn unfreeze(containerd: &Containerd, container_id: &str) -> Option<TaskState> {
    let mut last = None;
    for _ in 0..50 {
        match containerd.task_state(container_id).await {
            Ok(TaskState::Paused) | Ok(TaskState::Pausing) => {
                if let Err(e) = containerd.resume(container_id).await {
                    // containerd refuses while it still winds down the cancelled checkpoint;
                    // the freezer itself does not.
                    let pid = containerd.task_pid(container_id).await.unwrap_or(0);
                    let thawed = pid != 0 && thaw_cgroup(pid);
                    tracing::warn!(container = container_id, error = %e, thawed, "resume after abort failed; thawed the freezer cgroup directly");
                }
            }
            Ok(state) => return Some(state),
            Err(e) => {
                tracing::warn!(container = container_id, error = %e, "task state after abort");
            }
        }
        last = containerd.task_state(container_id).await.ok();
        if last == Some(TaskState::Running) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Thaws the freezer cgroup `pid` is in (cgroup v1 `freezer.state`, v2 `cgroup.freeze`).
fn thaw_cgroup(pid: u32) -> bool {
    let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    let mut thawed = false;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let target = if controllers.split(',').any(|c| c == "freezer") {
            Some((
                std::path::Path::new("/sys/fs/cgroup/freezer")
                    .join(path)
                    .join("freezer.state"),
                "THAWED",
            ))
        } else if controllers.is_empty() {
            // v2: the unified hierarchy, mounted at the root or (hybrid) at unified/.
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .iter()
                .map(|root| std::path::Path::new(root).join(path).join("cgroup.freeze"))
                .find(|p| p.exists())
                .map(|p| (p, "0"))
        } else {
            None
        };
        if let Some((file, value)) = target {
            thawed |= std::fs::write(&file, value).is_ok();
        }
    }
    thawed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_runc_checkpoint() {
        let a = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(is_runc_checkpoint(
            &a("/usr/sbin/runc --root /r --log /l checkpoint --image-path /i --work-path /w --leave-running abc"),
            "abc"
        ));
        assert!(!is_runc_checkpoint(&a("/usr/sbin/runc state abc"), "abc"));
        assert!(!is_runc_checkpoint(&a("runc checkpoint abcd"), "abc"));
    }
}
