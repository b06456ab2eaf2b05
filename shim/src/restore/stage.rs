//! Unpacking a checkpoint archive into a staging directory, checking every member before
//! its bytes are written: safe names only, files and directories only, bounded sizes, the
//! JSON members parsed, `checkpoint/` flat, the archive hashed on the way so its digest can
//! be compared with its sidecar or image. Anything wrong is an error naming the member; the
//! caller removes the directory.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ckpt_format::members::{
    self, BIND_MOUNTS, CONFIG_DUMP, DELETED_FILES, DUMP_LOG, INVENTORY, NETWORK_STATUS,
    ROOTFS_DIFF, SPEC_DUMP, STATS_DUMP, STATUS_DUMP,
};
use ckpt_format::plan::IMAGES_DIR;
use ckpt_format::spec_dump::Spec;
use ckpt_shim_runc::rootfs;
use sha2::{Digest, Sha256};

use crate::archive::{source, Compression, MAX_LOADED_MEMBER};

/// Bounds on what an archive may make the shim write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_member_bytes: u64,
    pub max_total_bytes: u64,
}

/// `config.dump` as every engine writes it (kept under this path for the restore).
pub use ckpt_format::config_dump::ConfigDump;

/// What a staged checkpoint is.
#[derive(Debug, Clone)]
pub struct Staged {
    pub sha256: String,
    pub size: u64,
    pub config: ConfigDump,
    pub spec: Spec,
    pub has_status: bool,
    /// A non-empty `deleted.files` (CRI-O's and the shim's layout).
    pub has_deleted_files: bool,
    pub rootfs: Option<rootfs::Summary>,
    /// Members a restore does not use (volumes/, devshm-checkpoint.tar...).
    pub skipped: Vec<String>,
}

impl Staged {
    /// The pod namespace the checkpointed container ran in, as its engine recorded it
    /// (containerd's annotations, CRI-O's container name or labels); empty when it says none.
    pub fn namespace(&self) -> String {
        self.spec.pod_identity().namespace
    }

    /// The base image to create the container from: a pullable NAME@DIGEST or name, else
    /// the image id.
    pub fn base_image(&self) -> String {
        self.config.base_image()
    }

    /// Bind-mount destinations of the checkpointed container that the runtime did not
    /// provide itself: a restore needs the same paths mounted.
    pub fn bind_mounts(&self) -> Vec<String> {
        const RUNTIME_OWNED: &[&str] = &[
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev/shm",
            "/dev/termination-log",
        ];
        self.spec
            .mounts
            .iter()
            .filter(|m| m.is_bind())
            .filter_map(|m| m.destination.as_deref())
            .filter(|d| !RUNTIME_OWNED.contains(d))
            .map(str::to_owned)
            .collect()
    }
}

/// Hashes the archive's bytes as the decoder pulls them from the file.
struct Hashing {
    file: File,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if let Ok(mut s) = self.state.lock() {
            s.0.update(&buf[..n]);
            s.1 += n as u64;
        }
        Ok(n)
    }
}

/// Unpacks `archive` into `dest` (an existing, empty, private directory).
pub fn stage(archive: &Path, dest: &Path, limits: &Limits) -> Result<Staged, String> {
    let shown = archive.display();
    let mut file = File::open(archive).map_err(|e| format!("{shown}: {e}"))?;
    let compression = source::sniff(&mut file).map_err(|e| format!("{shown}: {e}"))?;
    if compression == Compression::None {
        return stage_plain(archive, file, dest, limits);
    }
    // A dup shares the file offset: after the tar ends, it reads the trailing padding the
    // decoder left, so the digest covers the whole file.
    let rest = file.try_clone().map_err(|e| format!("{shown}: {e}"))?;
    let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let hashing = Hashing {
        file,
        state: state.clone(),
    };
    let reader: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            hashing,
        ))),
        Compression::Zstd => Box::new(
            source::ZstdFrames::new(BufReader::with_capacity(1 << 16, hashing))
                .map_err(|e| format!("{shown}: {e}"))?,
        ),
        _ => Box::new(hashing),
    };
    let mut staged = unpack(reader, dest, limits).map_err(|e| format!("{shown}: {e}"))?;
    let mut rest = Hashing {
        file: rest,
        state: state.clone(),
    };
    io::copy(&mut rest, &mut io::sink()).map_err(|e| format!("{shown}: {e}"))?;
    let (hasher, size) = std::mem::take(&mut *state.lock().map_err(|_| "hash state poisoned")?);
    staged.sha256 = format!("{:x}", hasher.finalize());
    staged.size = size;
    if let Some(diff) = Some(dest.join(ROOTFS_DIFF)).filter(|p| p.exists()) {
        staged.rootfs = Some(rootfs::check(&diff, limits.max_member_bytes)?);
    }
    Ok(staged)
}

/// A plain tar: members are copied file to file inside the kernel (`copy_file_range`, no
/// pass through this process), while another thread hashes the archive; the tar is walked
/// by seeking over member data.
fn stage_plain(archive: &Path, file: File, dest: &Path, limits: &Limits) -> Result<Staged, String> {
    let shown = archive.display().to_string();
    // The digest and the copies come from two reads of the file: it must not change in
    // between (size, modification and change times, inode).
    let identity = |f: &File| {
        f.metadata().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
            )
        })
    };
    let before = identity(&file).map_err(|e| format!("{shown}: {e}"))?;
    let mut hashed = File::open(archive).map_err(|e| format!("{shown}: {e}"))?;
    if identity(&hashed).map_err(|e| format!("{shown}: {e}"))? != before {
        return Err(format!("{shown} changed while it was being read"));
    }
    // Set when the archive is refused: the digest is no longer needed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let hasher = std::thread::Builder::new()
        .name("archive-sha256".into())
        .spawn(move || -> io::Result<(String, u64)> {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                match hashed.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        h.update(&buf[..n]);
                        size += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((format!("{:x}", h.finalize()), size))
        })
        .map_err(|e| format!("cannot start the hashing thread: {e}"))?;
    let source = file.try_clone().map_err(|e| format!("{shown}: {e}"))?;
    let mut tar = tar::Archive::new(file);
    let unpacked = tar
        .entries_with_seek()
        .map_err(|e| e.to_string())
        .and_then(|entries| unpack_entries(entries, dest, limits, Some(&source)));
    if unpacked.is_err() {
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let hash = hasher
        .join()
        .map_err(|_| "the hashing thread panicked".to_owned())?
        .map_err(|e| format!("{shown}: {e}"));
    let mut staged = unpacked.map_err(|e| format!("{shown}: {e}"))?;
    (staged.sha256, staged.size) = hash?;
    if identity(&source).map_err(|e| format!("{shown}: {e}"))? != before {
        return Err(format!("{shown} changed while it was being read"));
    }
    if let Some(diff) = Some(dest.join(ROOTFS_DIFF)).filter(|p| p.exists()) {
        staged.rootfs = Some(rootfs::check(&diff, limits.max_member_bytes)?);
    }
    Ok(staged)
}

/// Copies `len` bytes at `offset` of `from` into `to`, in the kernel.
fn copy_range(from: &File, offset: u64, len: u64, to: &File) -> io::Result<u64> {
    use std::os::fd::AsFd;
    let mut off = offset as i64;
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        let n = nix::fcntl::copy_file_range(from.as_fd(), Some(&mut off), to.as_fd(), None, want)
            .map_err(io::Error::from)?;
        if n == 0 {
            break; // the archive ends early: the caller reports the truncation
        }
        done += n as u64;
    }
    Ok(done)
}

/// Files a restore uses, at the archive's top level.
const TOP_LEVEL: &[&str] = &[
    CONFIG_DUMP,
    SPEC_DUMP,
    STATUS_DUMP,
    DELETED_FILES,
    ROOTFS_DIFF,
    BIND_MOUNTS,
    NETWORK_STATUS,
    DUMP_LOG,
    STATS_DUMP,
];
/// Members parsed as JSON before a restore goes on.
const JSON: &[&str] = &[CONFIG_DUMP, SPEC_DUMP, STATUS_DUMP, DELETED_FILES];

fn unpack(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Staged, String> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    unpack_entries(entries, dest, limits, None)
}

/// Checks and writes the members; with `in_place`, member data is copied from that file
/// (a plain tar) at the member's offset instead of read through the entries.
fn unpack_entries<R: Read>(
    entries: tar::Entries<'_, R>,
    dest: &Path,
    limits: &Limits,
    in_place: Option<&File>,
) -> Result<Staged, String> {
    let mut seen = HashSet::new();
    let mut skipped = Vec::new();
    let mut total = 0u64;
    std::fs::create_dir(dest.join(IMAGES_DIR)).map_err(|e| format!("staging: {e}"))?;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| format!("bad tar entry after member {index}: {e}"))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = members::normalise(&raw).map_err(|e| e.to_string())?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if name.starts_with(&format!("{IMAGES_DIR}/")) {
                return Err(format!("member {raw:?}: checkpoint/ holds no directories"));
            }
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(format!(
                "member {raw:?} is a {kind:?}: checkpoint archives hold only files and directories"
            ));
        }
        let size = entry.size();
        if size > limits.max_member_bytes {
            return Err(format!(
                "member {name:?} is {size} bytes, above the limit of {} (restore.max_member_bytes)",
                limits.max_member_bytes
            ));
        }
        total = total.saturating_add(size);
        if total > limits.max_total_bytes {
            return Err(format!(
                "the archive unpacks to more than {} bytes (restore.max_archive_bytes)",
                limits.max_total_bytes
            ));
        }
        let wanted = TOP_LEVEL.contains(&name.as_str())
            || name
                .strip_prefix(&format!("{IMAGES_DIR}/"))
                .is_some_and(|b| !b.is_empty() && !b.contains('/'));
        if !wanted {
            skipped.push(name);
            continue;
        }
        if JSON.contains(&name.as_str()) && size > MAX_LOADED_MEMBER {
            return Err(format!(
                "member {name:?} is {size} bytes; JSON members are at most {MAX_LOADED_MEMBER}"
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("member {name:?} appears twice"));
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest.join(&name))
            .map_err(|e| format!("staging {name}: {e}"))?;
        let copied = match in_place {
            Some(src) => copy_range(src, entry.raw_file_position(), size, &out),
            None => crate::archive::pages::copy_big(&mut entry, &mut out),
        }
        .map_err(|e| format!("member {name:?}: {e}"))?;
        if copied != size {
            return Err(format!(
                "member {name:?} is truncated: {copied} of {size} bytes"
            ));
        }
        out.flush().map_err(|e| format!("staging {name}: {e}"))?;
    }
    for required in [CONFIG_DUMP, SPEC_DUMP, INVENTORY] {
        if !seen.contains(required) {
            return Err(format!("not a checkpoint archive: it has no {required}"));
        }
    }
    let read_json = |name: &str| -> Result<Option<serde_json::Value>, String> {
        if !seen.contains(name) {
            return Ok(None);
        }
        let bytes = std::fs::read(dest.join(name)).map_err(|e| format!("{name}: {e}"))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("member {name:?} is not valid JSON: {e}"))
    };
    let config = ConfigDump::from_value(read_json(CONFIG_DUMP)?.unwrap_or_default())
        .map_err(|e| format!("member {CONFIG_DUMP:?}: {e}"))?;
    let spec = read_json(SPEC_DUMP)?.unwrap_or_default();
    if !spec.is_object() {
        return Err(format!("member {SPEC_DUMP:?} is not a JSON object"));
    }
    let spec = Spec::from_value(spec);
    if let Some(status) = read_json(STATUS_DUMP)? {
        if !status.is_object() {
            return Err(format!("member {STATUS_DUMP:?} is not a JSON object"));
        }
    }
    let mut has_deleted_files = false;
    if seen.contains(DELETED_FILES) {
        let bytes = std::fs::read(dest.join(DELETED_FILES)).map_err(|e| e.to_string())?;
        has_deleted_files = !rootfs::deleted_files(&bytes)?.is_empty();
    }
    Ok(Staged {
        sha256: String::new(),
        size: 0,
        config,
        spec,
        has_status: seen.contains(STATUS_DUMP),
        has_deleted_files,
        rootfs: None,
        skipped,
    })
}
