//! Reading checkpoint archives of any engine (shim, containerd 2.x, CRI-O, Podman), plain or
//! compressed, and unpacked checkpoint or CRIU image directories, in one sequential pass that
//! keeps only the members asked for.
//!
//! Small members (the JSON files, CRIU metadata images) are loaded into memory with a size
//! cap; pages files are never loaded: in a plain tar they are read in place, in a compressed
//! archive they are spooled to an unlinked temporary file, and only when the caller needs
//! memory contents. Member data that is not needed is skipped by seeking when the archive is
//! a plain file.

pub mod dump_log;
pub mod members;
pub mod metadata;
pub mod pages;
pub mod rootfs;
pub mod source;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use members::Role;
pub use pages::PagesFile;
pub use source::Compression;

use crate::criu::ImageSet;

/// The largest member loaded into memory (JSON files, CRIU metadata images).
pub const MAX_LOADED_MEMBER: u64 = 64 << 20;
/// Bytes of `dump.log` kept (its head holds CRIU's version).
pub const DUMP_LOG_HEAD: usize = ckpt_format::dump_log::HEAD_BYTES;

/// What a scan should keep beyond the metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    /// Random access to pages files (memory contents: argv/env, memparse).
    pub pages: bool,
    /// Of the pages, only argv and environ are needed: a compressed archive keeps just
    /// those bytes in memory instead of spooling whole pages files to `$TMPDIR`.
    pub args_only: bool,
    /// The listing of rootfs-diff.tar (reads the whole member).
    pub rootfs_listing: bool,
    /// Show a progress bar for big archives on a terminal.
    pub progress: bool,
}

/// An error reading an archive, with the archive, member and offset it happened at.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: member {member:?} at offset {offset}: {why}")]
    Member {
        path: String,
        member: String,
        offset: u64,
        why: String,
    },
    #[error("{path}: {why}")]
    Format { path: String, why: String },
}

/// One member as listed in the archive.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberInfo {
    pub name: String,
    pub size: u64,
}

/// The rootfs diff of a checkpoint.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RootfsDiff {
    pub size: u64,
    /// Present when the scan asked for the listing.
    pub changes: Option<Vec<rootfs::Change>>,
    /// More entries than [`rootfs::MAX_ENTRIES`].
    pub truncated: bool,
}

/// What a scan found.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub compression: Compression,
    /// Size of the archive file (or sum of member sizes for a directory).
    pub size: u64,
    pub members: Vec<MemberInfo>,
    pub config: Option<serde_json::Value>,
    pub spec: Option<serde_json::Value>,
    pub status: Option<serde_json::Value>,
    pub deleted_files: Option<Vec<String>>,
    pub dump_log_head: Option<String>,
    pub images: ImageSet,
    /// Sizes of the pages files, by base name.
    pub pages_sizes: BTreeMap<String, u64>,
    /// Random access to pages files, by base name (only when asked for).
    pub pages: BTreeMap<String, PagesFile>,
    pub rootfs_diff: Option<RootfsDiff>,
    /// Bytes read from the archive file by the scan (less than `size` when unneeded
    /// members were skipped by seeking).
    pub bytes_read: u64,
}

impl Checkpoint {
    /// Total bytes of the pages files.
    pub fn pages_bytes(&self) -> u64 {
        self.pages_sizes
            .values()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// `config.dump`, typed (absent, or not an object of the expected field types: None).
    pub fn config_dump(&self) -> Option<ckpt_format::config_dump::ConfigDump> {
        ckpt_format::config_dump::ConfigDump::from_value(self.config.clone()?).ok()
    }

    /// `spec.dump`, typed (what the readers need of it).
    pub fn spec_dump(&self) -> Option<ckpt_format::spec_dump::Spec> {
        Some(ckpt_format::spec_dump::Spec::from_value(self.spec.clone()?))
    }

    /// CRIU's version from the head of `dump.log`.
    pub fn criu_version(&self) -> Option<String> {
        ckpt_format::dump_log::criu_version(self.dump_log_head.as_deref()?)
    }

    fn new(path: &Path, compression: Compression, size: u64) -> Self {
        Checkpoint {
            path: path.to_owned(),
            compression,
            size,
            members: Vec::new(),
            config: None,
            spec: None,
            status: None,
            deleted_files: None,
            dump_log_head: None,
            images: ImageSet::default(),
            pages_sizes: BTreeMap::new(),
            pages: BTreeMap::new(),
            rootfs_diff: None,
            bytes_read: 0,
        }
    }
}

/// Reads a checkpoint archive or directory.
pub fn scan(path: &Path, want: Want) -> Result<Checkpoint, ArchiveError> {
    let shown = path.display().to_string();
    let io_err = |source: io::Error| ArchiveError::Io {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return scan_dir(path, want);
    }
    let mut file = File::open(path).map_err(io_err)?;
    let compression = source::sniff(&mut file).map_err(io_err)?;
    let size = meta.len();
    let bar = source::progress(path, size, want.progress);
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = source::Counting {
        inner: file,
        bar: bar.clone(),
        pos: 0,
        read: read.clone(),
    };
    let mut cp = Checkpoint::new(path, compression, size);
    let result = match compression {
        Compression::None => {
            let shared = Arc::new(File::open(path).map_err(io_err)?);
            let mut archive = tar::Archive::new(counting);
            let entries = archive.entries_with_seek().map_err(io_err)?;
            walk(&mut cp, entries, want, Some(shared))
        }
        Compression::Gzip => {
            let gz = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 16, counting));
            let mut archive = tar::Archive::new(gz);
            let entries = archive.entries().map_err(io_err)?;
            walk(&mut cp, entries, want, None)
        }
        Compression::Zstd => {
            let zs = source::ZstdFrames::new(BufReader::with_capacity(1 << 16, counting))
                .map_err(io_err)?;
            let mut archive = tar::Archive::new(zs);
            let entries = archive.entries().map_err(io_err)?;
            walk(&mut cp, entries, want, None)
        }
        Compression::Directory => unreachable!("directories are handled above"),
    };
    bar.finish_and_clear();
    result?;
    cp.bytes_read = read.load(std::sync::atomic::Ordering::Relaxed);
    if cp.members.is_empty() {
        return Err(ArchiveError::Format {
            path: shown,
            why: "not a tar archive, or an empty one".into(),
        });
    }
    Ok(cp)
}

fn walk<R: Read>(
    cp: &mut Checkpoint,
    entries: tar::Entries<'_, R>,
    want: Want,
    in_place: Option<Arc<File>>,
) -> Result<(), ArchiveError> {
    let path = cp.path.display().to_string();
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| ArchiveError::Format {
            path: path.clone(),
            why: format!("bad tar entry after member {index}: {e}"),
        })?;
        let offset = entry.raw_file_position();
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let member_err = |why: String| ArchiveError::Member {
            path: path.clone(),
            member: raw.clone(),
            offset,
            why,
        };
        let name = members::normalise(&raw).map_err(|e| member_err(e.to_string()))?;
        let size = entry.size();
        if in_place.is_some() {
            // In a plain tar the member's bytes must really be there.
            let end = offset
                .checked_add(size)
                .ok_or_else(|| member_err("size overflows".into()))?;
            if end > cp.size {
                return Err(member_err(format!(
                    "declares {size} bytes but the archive ends {} bytes after its start",
                    cp.size.saturating_sub(offset)
                )));
            }
        }
        if !entry.header().entry_type().is_file() {
            continue;
        }
        cp.members.push(MemberInfo {
            name: name.clone(),
            size,
        });
        let at = match &in_place {
            Some(file) => PagesAt::InPlace {
                file: file.clone(),
                base: offset,
            },
            None => PagesAt::Spool,
        };
        take_member(cp, want, &name, size, &mut entry, at, &member_err)?;
    }
    Ok(())
}

/// Where a pages member's bytes can be read once the scan is over.
enum PagesAt {
    /// At `base` of the (plain tar) archive file.
    InPlace { file: Arc<File>, base: u64 },
    /// Only in the stream being read: copy them to a spool file.
    Spool,
    /// In a file of its own (unpacked directory).
    Own(PathBuf),
}

/// Keeps what `want` asks for of one regular member whose bytes `data` yields.
fn take_member(
    cp: &mut Checkpoint,
    want: Want,
    name: &str,
    size: u64,
    data: &mut dyn Read,
    at: PagesAt,
    member_err: &dyn Fn(String) -> ArchiveError,
) -> Result<(), ArchiveError> {
    let mut load = || -> Result<Vec<u8>, ArchiveError> {
        if size > MAX_LOADED_MEMBER {
            return Err(member_err(format!(
                "{size} bytes is over the {MAX_LOADED_MEMBER}-byte limit"
            )));
        }
        let mut buf = Vec::with_capacity(size as usize);
        data.read_to_end(&mut buf)
            .map_err(|e| member_err(e.to_string()))?;
        if buf.len() as u64 != size {
            return Err(member_err(format!(
                "truncated: {} of {size} bytes",
                buf.len()
            )));
        }
        Ok(buf)
    };
    let json = |bytes: Vec<u8>| -> Result<serde_json::Value, ArchiveError> {
        serde_json::from_slice(&bytes).map_err(|e| member_err(format!("not JSON: {e}")))
    };
    match members::role(name) {
        Role::Config => cp.config = Some(json(load()?)?),
        Role::Spec => cp.spec = Some(json(load()?)?),
        Role::Status => cp.status = Some(json(load()?)?),
        Role::DeletedFiles => cp.deleted_files = Some(string_list(&json(load()?)?)),
        Role::DumpLog => {
            let mut head = Vec::with_capacity(DUMP_LOG_HEAD);
            data.take(DUMP_LOG_HEAD as u64)
                .read_to_end(&mut head)
                .map_err(|e| member_err(e.to_string()))?;
            cp.dump_log_head = Some(String::from_utf8_lossy(&head).into_owned());
        }
        Role::Image(base) => {
            let bytes = load()?;
            cp.images.insert(&base, bytes);
        }
        Role::Pages(base) => {
            cp.pages_sizes.insert(base.clone(), size);
            if !want.pages {
                return Ok(());
            }
            let pf = match at {
                PagesAt::InPlace { file, base } => PagesFile::in_file(name, file, base, size),
                PagesAt::Own(path) => {
                    let f = File::open(&path).map_err(|e| member_err(e.to_string()))?;
                    PagesFile::in_file(name, Arc::new(f), 0, size)
                }
                PagesAt::Spool => {
                    // Only argv/environ wanted and the maps already seen (tars list
                    // mm-* and pagemap-* before pages-*): keep just those bytes.
                    let ranges = if want.args_only {
                        cp.images.arg_env_ranges(&base).ok().flatten().filter(|r| {
                            r.iter().map(|(s, e)| e - s).sum::<u64>() <= pages::MAX_CAPTURED
                        })
                    } else {
                        None
                    };
                    match ranges {
                        Some(r) => PagesFile::capture(name, size, data, &r)
                            .map_err(|e| member_err(e.to_string()))?,
                        None => {
                            let mut spool =
                                pages::spool_file().map_err(|e| member_err(e.to_string()))?;
                            let copied = pages::copy_big(data, &mut spool)
                                .map_err(|e| member_err(e.to_string()))?;
                            if copied != size {
                                return Err(member_err(format!(
                                    "truncated: {copied} of {size} bytes"
                                )));
                            }
                            PagesFile::in_file(name, Arc::new(spool), 0, size)
                        }
                    }
                }
            };
            cp.pages.insert(base, pf);
        }
        Role::RootfsDiff => {
            let mut diff = RootfsDiff {
                size,
                ..Default::default()
            };
            if want.rootfs_listing {
                let (changes, truncated) =
                    rootfs::list(data).map_err(|e| member_err(format!("rootfs-diff.tar: {e}")))?;
                diff.changes = Some(changes);
                diff.truncated = truncated;
            }
            cp.rootfs_diff = Some(diff);
        }
        Role::Other => {}
    }
    Ok(())
}

fn string_list(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An unpacked checkpoint (config.dump + checkpoint/) or a bare CRIU image directory.
fn scan_dir(path: &Path, want: Want) -> Result<Checkpoint, ArchiveError> {
    let shown = path.display().to_string();
    let io_err = |p: &Path, source: io::Error| ArchiveError::Io {
        path: p.display().to_string(),
        source,
    };
    let dirs: &[&str] = if path.join(members::CHECKPOINT_DIR).is_dir() {
        &["", members::CHECKPOINT_DIR]
    } else {
        &[""]
    };
    let mut cp = Checkpoint::new(path, Compression::Directory, 0);
    let mut names: Vec<String> = Vec::new();
    for dir in dirs {
        let d = path.join(dir);
        for e in std::fs::read_dir(&d).map_err(|e| io_err(&d, e))? {
            let e = e.map_err(|e| io_err(&d, e))?;
            if e.file_type()
                .map_err(|err| io_err(&e.path(), err))?
                .is_file()
            {
                let base = e.file_name().to_string_lossy().into_owned();
                names.push(if dir.is_empty() {
                    base
                } else {
                    format!("{dir}/{base}")
                });
            }
        }
    }
    names.sort();
    for name in names {
        let p = path.join(&name);
        let file = File::open(&p).map_err(|e| io_err(&p, e))?;
        let size = file.metadata().map_err(|e| io_err(&p, e))?.len();
        cp.size = cp.size.saturating_add(size);
        cp.members.push(MemberInfo {
            name: name.clone(),
            size,
        });
        let member_err = |why: String| ArchiveError::Member {
            path: shown.clone(),
            member: name.clone(),
            offset: 0,
            why,
        };
        let mut data = &file;
        take_member(
            &mut cp,
            want,
            &name,
            size,
            &mut data,
            PagesAt::Own(p.clone()),
            &member_err,
        )?;
    }
    Ok(cp)
}
