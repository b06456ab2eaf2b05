//! The inspection report: one serialisable value that both output formats render. Its JSON
//! form is documented in docs/inspect-json.md and versioned by `schema`.

use std::path::Path;

use serde::Serialize;

use crate::archive::metadata::{self, Container};
use crate::archive::{self, Checkpoint, Compression};
use crate::criu::dump::{DumpStats, Mount, OpenFile, Socket};
use crate::criu::memory::Memory;
use crate::criu::Dump;

/// Version tag of the JSON report. Bump on any incompatible change.
pub const SCHEMA: &str = "ckpt-shim.inspect/v1";

/// What to include beyond the summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sections {
    pub ps_tree: bool,
    pub cmd: bool,
    pub env: bool,
    pub files: bool,
    pub sockets: bool,
    pub mounts: bool,
    pub stats: bool,
}

impl Sections {
    pub fn all() -> Self {
        Sections {
            ps_tree: true,
            cmd: true,
            env: true,
            files: true,
            sockets: true,
            mounts: true,
            stats: true,
        }
    }

    /// Whether memory contents must be readable.
    pub fn needs_pages(&self) -> bool {
        self.cmd || self.env
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ArchiveInfo {
    pub path: String,
    pub compression: Compression,
    pub size: u64,
    pub members: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CriuInfo {
    pub version: Option<String>,
    pub image_version: Option<u32>,
    pub lsm: Option<String>,
    pub plugins: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sizes {
    /// Sum of the pages-*.img members.
    pub memory_pages: u64,
    /// The rootfs-diff.tar member, when present.
    pub rootfs_diff: Option<u64>,
}

/// One process in the report.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessReport {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub comm: String,
    pub state: String,
    pub threads: usize,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environ: Option<Vec<String>>,
    /// Bytes of this process's memory in the pages files.
    pub memory_dumped: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<OpenFile>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sockets: Option<Vec<SocketReport>>,
    /// Why cmdline/environ could not be read, if they were asked for and failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_error: Option<String>,
}

/// A socket with the descriptor it is open on.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SocketReport {
    pub fd: u32,
    #[serde(flatten)]
    pub socket: Socket,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub archive: ArchiveInfo,
    pub container: Container,
    pub criu: CriuInfo,
    pub sizes: Sizes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<ProcessReport>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<DumpStats>,
}

/// Reads an archive and its CRIU images.
pub fn open(path: &Path, want: archive::Want) -> anyhow::Result<(Checkpoint, Dump)> {
    let cp = archive::scan(path, want)?;
    if cp.images.files.is_empty() {
        anyhow::bail!(
            "{}: no CRIU images found (no checkpoint/ directory or *.img files)",
            path.display()
        );
    }
    let dump = Dump::load(&cp.images).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((cp, dump))
}

/// Builds the report of `sections` from a scanned checkpoint.
pub fn build(cp: &Checkpoint, dump: &Dump, sections: Sections) -> Report {
    let processes = (sections.ps_tree || sections.files || sections.sockets).then(|| {
        dump.processes
            .iter()
            .map(|p| {
                let mut pr = ProcessReport {
                    pid: p.pid,
                    ppid: p.ppid,
                    pgid: p.pgid,
                    sid: p.sid,
                    comm: p.comm.clone(),
                    state: p.state.clone(),
                    threads: p.threads.len(),
                    uid: p.uid,
                    gid: p.gid,
                    cwd: p.cwd.clone(),
                    root: p.root.clone(),
                    cmdline: None,
                    environ: None,
                    memory_dumped: p.memory.as_ref().map(|m| m.dumped_bytes),
                    files: sections.files.then(|| {
                        p.files
                            .iter()
                            .filter(|f| f.socket.is_none())
                            .cloned()
                            .collect()
                    }),
                    sockets: sections.sockets.then(|| {
                        p.files
                            .iter()
                            .filter_map(|f| {
                                f.socket
                                    .clone()
                                    .map(|socket| SocketReport { fd: f.fd, socket })
                            })
                            .collect()
                    }),
                    memory_error: None,
                };
                if sections.cmd || sections.env {
                    match read_args(cp, p, sections) {
                        Ok((cmd, env)) => {
                            pr.cmdline = cmd;
                            pr.environ = env;
                        }
                        Err(e) => pr.memory_error = Some(e),
                    }
                }
                pr
            })
            .collect()
    });
    let inv = dump.inventory.as_ref();
    Report {
        schema: SCHEMA,
        archive: ArchiveInfo {
            path: cp.path.display().to_string(),
            compression: cp.compression,
            size: cp.size,
            members: cp.members.len(),
        },
        container: metadata::container(cp),
        criu: CriuInfo {
            version: metadata::criu_version(cp),
            image_version: inv.map(|i| i.img_version),
            lsm: inv.and_then(|i| i.lsm.clone()),
            plugins: inv.map(|i| i.plugins.clone()).unwrap_or_default(),
        },
        sizes: Sizes {
            memory_pages: cp.pages_bytes(),
            rootfs_diff: cp.rootfs_diff.as_ref().map(|d| d.size),
        },
        processes,
        mounts: sections.mounts.then(|| {
            let mut m = dump.mounts.clone();
            m.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
            m
        }),
        stats: if sections.stats {
            dump.stats.clone()
        } else {
            None
        },
    }
}

type Args = (Option<Vec<String>>, Option<Vec<String>>);

/// argv and environ of a process, read from its memory pages.
fn read_args(
    cp: &Checkpoint,
    p: &crate::criu::dump::Process,
    sections: Sections,
) -> Result<Args, String> {
    let (Some(map), Some(layout)) = (&p.pagemap, &p.memory) else {
        return Err("no memory images for this process".into());
    };
    let pages_name = map.pages_file();
    let Some(pages) = cp.pages.get(&pages_name) else {
        return Err(format!("{pages_name} is not in the checkpoint"));
    };
    let mem = Memory::new(map, pages).map_err(|e| e.to_string())?;
    let cmd = if sections.cmd {
        Some(
            mem.strings(layout.arg_start, layout.arg_end)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let env = if sections.env {
        Some(
            mem.strings(layout.env_start, layout.env_end)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    Ok((cmd, env))
}
