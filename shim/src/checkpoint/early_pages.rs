//! CRIU's page images enter the archive while the dump is still running. CRIU writes each
//! task's `pages-N.img` once and closes it well before the dump ends (the rest of the
//! task's state, CRIU's exit, runc's and containerd's own work still follow), so copying and
//! hashing the biggest members in that time takes them off the checkpoint's critical path.
//!
//! The archive's digest runs over its bytes in order, and a member's tar header (which holds
//! its size) comes before its data: a page image can only be archived once it is closed. A
//! close is seen through inotify (`IN_CLOSE_WRITE`). After the dump each image taken early
//! must still be the same file with the same size and time; otherwise the caller starts the
//! archive again without this shortcut.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::archive_writer::ArchiveWriter;

/// An image archived while the dump ran, as it was then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub name: OsString,
    identity: (u64, u64, i64, i64),
}

fn identity(path: &Path) -> io::Result<(u64, u64, i64, i64)> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Whether `name` is a page image (`pages-<id>.img`).
fn is_pages(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.strip_prefix("pages-")
        .and_then(|rest| rest.strip_suffix(".img"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Watches `images` and archives each page image as soon as CRIU closes it.
pub struct EarlyPages {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<io::Result<(ArchiveWriter, Vec<Taken>)>>,
}

impl EarlyPages {
    /// `images` must exist. The writer is handed back by `finish`.
    pub fn start(images: &Path, mut writer: ArchiveWriter) -> io::Result<EarlyPages> {
        let watched = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|i| {
            i.add_watch(images, AddWatchFlags::IN_CLOSE_WRITE)
                .map(|_| i)
        });
        let inotify = match watched {
            Ok(i) => Some(i),
            Err(e) => {
                // Not fatal: every image is then archived after the dump.
                tracing::debug!(error = %e, "cannot watch the CRIU images; archiving them after the dump");
                None
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let images: PathBuf = images.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("early-pages".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let mut taken = Vec::new();
                    let Some(inotify) = inotify else {
                        while !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        return Ok((writer, taken));
                    };
                    loop {
                        use std::os::fd::AsFd;
                        // Once stopped, the closes already queued are still taken, then no more.
                        let stopping = stop.load(Ordering::Relaxed);
                        if !stopping {
                            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                            match poll(&mut fds, PollTimeout::from(10u8)) {
                                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                                Ok(_) => {}
                                Err(e) => return Err(e.into()),
                            }
                        }
                        let events = match inotify.read_events() {
                            Ok(events) => events,
                            Err(nix::errno::Errno::EAGAIN) if stopping => break,
                            Err(nix::errno::Errno::EAGAIN) => continue,
                            Err(e) => return Err(e.into()),
                        };
                        for name in events.into_iter().filter_map(|e| e.name) {
                            if !is_pages(&name) || taken.iter().any(|t: &Taken| t.name == name) {
                                continue;
                            }
                            let path = images.join(&name);
                            let before = identity(&path)?;
                            writer.add_image(
                                &format!("checkpoint/{}", name.to_string_lossy()),
                                &path,
                            )?;
                            taken.push(Taken {
                                name,
                                identity: before,
                            });
                        }
                        if stopping {
                            break;
                        }
                    }
                    Ok((writer, taken))
                }
            })?;
        Ok(EarlyPages { stop, thread })
    }

    /// Stops watching and hands back the writer with what was taken: an image being archived
    /// is finished first, and images closed before this call are taken too.
    pub fn finish(self) -> io::Result<(ArchiveWriter, Vec<Taken>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the early page archiver panicked"))?
    }
}

/// Whether every image taken early is still the file that was archived.
pub fn unchanged(images: &Path, taken: &[Taken]) -> bool {
    taken
        .iter()
        .all(|t| identity(&images.join(&t.name)).is_ok_and(|now| now == t.identity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn page_image_names() {
        assert!(is_pages("pages-1.img".as_ref()));
        assert!(is_pages("pages-123.img".as_ref()));
        assert!(!is_pages("pagemap-1.img".as_ref()));
        assert!(!is_pages("pages-.img".as_ref()));
        assert!(!is_pages("pages-1.img.tmp".as_ref()));
    }

    #[test]
    fn a_closed_page_image_is_archived_and_a_changed_one_is_noticed() {
        let dir = std::env::temp_dir().join(format!("ckpt-early-{}", std::process::id()));
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        let archive = dir.join("a.tar");
        let writer = ArchiveWriter::create(&archive, None, None).unwrap();
        let early = EarlyPages::start(&images, writer).unwrap();
        let pages = vec![5u8; 3 << 20];
        let mut f = std::fs::File::create(images.join("pages-1.img")).unwrap();
        f.write_all(&pages).unwrap();
        drop(f);
        std::fs::write(images.join("pagemap-1.img"), b"map").unwrap();
        let (writer, taken) = early.finish().unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].name, "pages-1.img");
        assert!(unchanged(&images, &taken));
        writer.finish().unwrap();
        let mut a = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["checkpoint/pages-1.img"]);
        // Rewritten after it was taken: no longer the archived file.
        std::fs::write(images.join("pages-1.img"), b"other").unwrap();
        assert!(!unchanged(&images, &taken));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
