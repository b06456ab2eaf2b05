//! Removing a staged checkpoint (see `ckpt_format::plan`), mounts left below it included.

use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};

/// Detaches every mount at or below `dir` (deepest first). CRIU mounts a cgroup yard in its
/// work directory; a CRIU killed by the watchdog leaves it there, and nothing below a
/// mount point can be removed.
pub fn unmount_under(dir: &Path) -> usize {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return 0;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points.dedup();
    // MNT_DETACH never blocks on busy mounts.
    points
        .iter()
        .filter(|p| umount2(p.as_path(), MntFlags::MNT_DETACH).is_ok())
        .count()
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a staged checkpoint, mounts left below it included.
pub fn remove_staged(dir: &Path) -> std::io::Result<()> {
    unmount_under(dir);
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(super::unescape(r"/plain"), "/plain");
        assert_eq!(super::unescape(r"/short\04"), r"/short\04");
    }
}
