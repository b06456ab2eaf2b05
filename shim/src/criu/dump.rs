//! One checkpoint's CRIU images turned into plain records: the process tree, each process's
//! open files and sockets, its memory layout, the mounts and CRIU's dump statistics.
//!
//! The images used (CRIU 4.2 names): `inventory.img`, `pstree.img`, `core-<pid>.img`,
//! `ids-<pid>.img` (or the ids inside the core entry), `fdinfo-<files_id>.img`,
//! `files.img`, `fs-<pid>.img`, `mm-<pid>.img`, `pagemap-<pid>.img`,
//! `mountpoints-<mnt_ns_id>.img`, `tcp-stream-<ino hex>.img` and `stats-dump`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::image::{decode_all, decode_first, ImageError, ImageErrorKind};
use super::magic::{self, Head};
use super::pagemap::{PageMap, PE_LAZY, PE_PARENT};
use crate::api::criu as pb;

/// At most this many bytes of argv and of environ are read per process.
pub const ARGS_MAX: u64 = 1 << 20;

/// The metadata images of one checkpoint, by base file name (`pstree.img`). Pages files are
/// not in here: they are read through [`super::memory`].
#[derive(Default, Debug)]
pub struct ImageSet {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl ImageSet {
    /// Whether a member of the checkpoint directory is a metadata image this reader decodes
    /// (and so worth loading into memory).
    pub fn wants(name: &str) -> bool {
        Head::for_file(name).is_some()
    }

    pub fn insert(&mut self, name: &str, bytes: Vec<u8>) {
        let base = name.rsplit('/').next().unwrap_or(name);
        self.files.insert(base.to_owned(), bytes);
    }

    /// Byte ranges of `pages_file` (merged, in order) holding the argv and environ of every
    /// process whose pagemap points at it, so a reader of a compressed archive can keep just
    /// those bytes. None when no loaded pagemap points at the file, or a matching process has
    /// no mm image yet: the caller must then keep the whole file.
    pub fn arg_env_ranges(&self, pages_file: &str) -> Result<Option<Vec<(u64, u64)>>, ImageError> {
        let mut ranges = Vec::new();
        let mut matched = false;
        for (name, bytes) in &self.files {
            let Some(pid) = name
                .strip_prefix("pagemap-")
                .and_then(|n| n.strip_suffix(".img"))
            else {
                continue;
            };
            let map = PageMap::parse(name, bytes)?;
            if map.pages_file() != pages_file {
                continue;
            }
            matched = true;
            let Some(mm) = self
                .first::<pb::MmEntry>(&format!("mm-{pid}.img"))
                .transpose()?
            else {
                return Ok(None);
            };
            for (start, end) in [
                (mm.mm_arg_start, mm.mm_arg_end),
                (mm.mm_env_start, mm.mm_env_end),
            ] {
                let end = end.min(start.saturating_add(ARGS_MAX));
                let mut at = start;
                while at < end {
                    let Some(run) = map.run_at(at) else { break };
                    let Some(base) = run.pages_offset else { break };
                    let stop = run.end().min(end);
                    ranges.push((base + (at - run.vaddr), base + (stop - run.vaddr)));
                    at = stop;
                }
            }
        }
        if !matched {
            return Ok(None);
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Ok(Some(merged))
    }

    fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    fn need(&self, name: &str) -> Result<&[u8], ImageError> {
        self.get(name)
            .ok_or_else(|| ImageError::new(name, 0, ImageErrorKind::Missing))
    }

    fn first<M: prost::Message + Default>(&self, name: &str) -> Option<Result<M, ImageError>> {
        let bytes = self.get(name)?;
        let head = Head::for_file(name)?;
        Some(decode_first(name, bytes, head))
    }
}

/// What the inventory says about the dump.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Inventory {
    pub img_version: u32,
    pub lsm: Option<String>,
    pub tcp_close: Option<bool>,
    pub plugins: Vec<String>,
    pub dump_criu_run_id: Option<String>,
}

/// One process of the dumped tree.
#[derive(Clone, Debug, Serialize)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    pub threads: Vec<u32>,
    /// Command name (the kernel's `comm`, up to 15 bytes).
    pub comm: String,
    /// alive | dead | stopped | zombie | other(N)
    pub state: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cwd: Option<String>,
    pub root: Option<String>,
    pub files: Vec<OpenFile>,
    pub memory: Option<MemoryLayout>,
    #[serde(skip)]
    pub pagemap: Option<PageMap>,
}

/// Where argv and environ are, and how much memory the process has.
#[derive(Clone, Debug, Serialize, Default)]
pub struct MemoryLayout {
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// Number of mappings.
    pub vmas: usize,
    /// Sum of all mapping sizes.
    pub vm_bytes: u64,
    /// Bytes stored in this checkpoint's pages file.
    pub dumped_bytes: u64,
    /// Bytes left to a parent (pre-dump) image.
    pub parent_bytes: u64,
    /// Bytes marked for lazy restore.
    pub lazy_bytes: u64,
    /// `pages-<id>.img` holding this process's pages.
    pub pages_file: Option<String>,
}

/// One file descriptor.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OpenFile {
    pub fd: u32,
    /// file | pipe | fifo | inet | unix | packet | netlink | tty | eventfd | eventpoll |
    /// signalfd | inotify | fanotify | timerfd | tun | ns | memfd | ext | unknown
    pub kind: String,
    /// The path, `pipe:[N]`, or a socket's short description.
    pub path: String,
    /// r | w | rw, for files with open flags.
    pub mode: Option<String>,
    pub pos: Option<u64>,
    pub socket: Option<Socket>,
}

/// One socket, as `ss` would show it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Socket {
    /// tcp | udp | tcp6 | udp6 | raw | unix | packet | netlink
    pub protocol: String,
    /// LISTEN, ESTABLISHED, ... (kernel TCP state names; unix sockets use the same table)
    pub state: String,
    /// stream | dgram | seqpacket | raw
    pub sock_type: String,
    pub local: String,
    pub remote: String,
    pub inode: u32,
    /// Bytes queued in the send / receive queues of a dumped TCP connection.
    pub send_queue: Option<u32>,
    pub recv_queue: Option<u32>,
}

/// One mount of the container's mount namespace.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Mount {
    pub mnt_id: u32,
    pub parent_mnt_id: u32,
    pub mountpoint: String,
    pub root: String,
    pub fstype: String,
    pub source: String,
    pub options: String,
    /// Bind mount from outside the container (CRIU's external mount).
    pub external: bool,
}

/// CRIU's dump statistics (`stats-dump`), times in microseconds.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DumpStats {
    pub freezing_time_us: u32,
    pub frozen_time_us: u32,
    pub memdump_time_us: u32,
    pub memwrite_time_us: u32,
    pub pages_scanned: u64,
    pub pages_skipped_parent: u64,
    pub pages_written: u64,
    pub pages_lazy: u64,
}

/// Everything read from one checkpoint's images.
#[derive(Clone, Debug, Serialize)]
pub struct Dump {
    pub inventory: Option<Inventory>,
    pub processes: Vec<Process>,
    pub mounts: Vec<Mount>,
    pub stats: Option<DumpStats>,
}

impl Dump {
    /// Reads the images. `pstree.img` is required; a missing per-process image leaves the
    /// matching fields empty; a malformed one is an error.
    pub fn load(images: &ImageSet) -> Result<Dump, ImageError> {
        let inventory = images
            .first::<pb::InventoryEntry>("inventory.img")
            .transpose()?
            .map(|inv| Inventory {
                img_version: inv.img_version,
                lsm: inv
                    .lsmtype
                    .and_then(|l| pb::Lsmtype::try_from(l).ok())
                    .map(|l| l.as_str_name().to_owned()),
                tcp_close: inv.tcp_close,
                plugins: inv.plugins_entry.map(|p| p.plugins).unwrap_or_default(),
                dump_criu_run_id: inv.dump_criu_run_id,
            });
        let pstree: Vec<pb::PstreeEntry> = decode_all(
            "pstree.img",
            images.need("pstree.img")?,
            Head::Common(magic::PSTREE),
        )?;
        let files = FileTable::load(images)?;
        let mut mnt_ns = Vec::new();
        let mut processes = Vec::with_capacity(pstree.len());
        for entry in pstree {
            let p = load_process(images, &files, entry, &mut mnt_ns)?;
            processes.push(p);
        }
        let mounts = load_mounts(images, &mnt_ns)?;
        let stats = images
            .first::<pb::StatsEntry>("stats-dump")
            .transpose()?
            .and_then(|s| s.dump)
            .map(|d| DumpStats {
                freezing_time_us: d.freezing_time,
                frozen_time_us: d.frozen_time,
                memdump_time_us: d.memdump_time,
                memwrite_time_us: d.memwrite_time,
                pages_scanned: d.pages_scanned,
                pages_skipped_parent: d.pages_skipped_parent,
                pages_written: d.pages_written,
                pages_lazy: d.pages_lazy,
            });
        Ok(Dump {
            inventory,
            processes,
            mounts,
            stats,
        })
    }

    /// Bytes of memory in the pages files, over all processes.
    pub fn dumped_bytes(&self) -> u64 {
        self.processes
            .iter()
            .filter_map(|p| p.memory.as_ref())
            .map(|m| m.dumped_bytes)
            .fold(0u64, u64::saturating_add)
    }

    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.processes.iter().find(|p| p.pid == pid)
    }
}

fn task_state(state: u32) -> String {
    match state {
        1 => "alive".into(),
        2 => "dead".into(),
        3 => "stopped".into(),
        6 => "zombie".into(),
        n => format!("other({n})"),
    }
}

fn load_process(
    images: &ImageSet,
    files: &FileTable,
    entry: pb::PstreeEntry,
    mnt_ns: &mut Vec<u32>,
) -> Result<Process, ImageError> {
    let pid = entry.pid;
    let core = images
        .first::<pb::CoreEntry>(&format!("core-{pid}.img"))
        .transpose()?;
    let ids = match images
        .first::<pb::TaskKobjIdsEntry>(&format!("ids-{pid}.img"))
        .transpose()?
    {
        Some(ids) => Some(ids),
        None => core.as_ref().and_then(|c| c.ids),
    };
    if let Some(ns) = ids.as_ref().and_then(|i| i.mnt_ns_id) {
        // First-seen order (the container's init comes first); few distinct values.
        if mnt_ns.len() < 64 && !mnt_ns.contains(&ns) {
            mnt_ns.push(ns);
        }
    }
    let tc = core.as_ref().and_then(|c| c.tc.as_ref());
    let creds = core
        .as_ref()
        .and_then(|c| c.thread_core.as_ref())
        .and_then(|t| t.creds.as_ref());

    // Open files: fdinfo-<files_id>.img, or per pid in images without fdinfo_per_id.
    let fd_image = ids
        .as_ref()
        .map(|i| format!("fdinfo-{}.img", i.files_id))
        .filter(|n| images.get(n).is_some())
        .unwrap_or_else(|| format!("fdinfo-{pid}.img"));
    let mut open = Vec::new();
    if let Some(bytes) = images.get(&fd_image) {
        let fds: Vec<pb::FdinfoEntry> = decode_all(&fd_image, bytes, Head::Common(magic::FDINFO))?;
        for fd in fds {
            open.push(files.describe(fd.fd, fd.id, fd.r#type));
        }
    }
    open.sort_by_key(|f| f.fd);

    let fs = images
        .first::<pb::FsEntry>(&format!("fs-{pid}.img"))
        .transpose()?;
    let (cwd, root) = match fs {
        Some(fs) => (files.path_of(fs.cwd_id), files.path_of(fs.root_id)),
        None => (None, None),
    };

    let mm = images
        .first::<pb::MmEntry>(&format!("mm-{pid}.img"))
        .transpose()?;
    let pagemap_name = format!("pagemap-{pid}.img");
    let pagemap = images
        .get(&pagemap_name)
        .map(|b| PageMap::parse(&pagemap_name, b))
        .transpose()?;
    let memory = if mm.is_some() || pagemap.is_some() {
        let mut layout = MemoryLayout::default();
        if let Some(mm) = &mm {
            layout.arg_start = mm.mm_arg_start;
            layout.arg_end = mm.mm_arg_end;
            layout.env_start = mm.mm_env_start;
            layout.env_end = mm.mm_env_end;
            layout.vmas = mm.vmas.len();
            layout.vm_bytes = mm.vmas.iter().fold(0u64, |acc, v| {
                acc.saturating_add(v.end.saturating_sub(v.start))
            });
        }
        if let Some(map) = &pagemap {
            layout.dumped_bytes = map.present_bytes();
            layout.parent_bytes = map.bytes_with(PE_PARENT);
            layout.lazy_bytes = map.bytes_with(PE_LAZY);
            layout.pages_file = Some(map.pages_file());
        }
        Some(layout)
    } else {
        None
    };

    Ok(Process {
        pid,
        ppid: entry.ppid,
        pgid: entry.pgid,
        sid: entry.sid,
        threads: entry.threads,
        comm: tc.map(|t| t.comm.clone()).unwrap_or_default(),
        state: tc
            .map(|t| task_state(t.task_state))
            .unwrap_or_else(|| "unknown".into()),
        uid: creds.map(|c| c.uid),
        gid: creds.map(|c| c.gid),
        cwd,
        root,
        files: open,
        memory,
        pagemap,
    })
}

fn load_mounts(images: &ImageSet, namespaces: &[u32]) -> Result<Vec<Mount>, ImageError> {
    // The container's own mount namespace first; any other mountpoints image after it.
    let mut names: Vec<String> = namespaces
        .iter()
        .map(|n| format!("mountpoints-{n}.img"))
        .collect();
    let first: std::collections::HashSet<String> = names.iter().cloned().collect();
    for name in images.files.keys() {
        if name.starts_with("mountpoints-") && !first.contains(name) {
            names.push(name.clone());
        }
    }
    let mut out = Vec::new();
    for name in names {
        let Some(bytes) = images.get(&name) else {
            continue;
        };
        let entries: Vec<pb::MntEntry> = decode_all(&name, bytes, Head::Common(magic::MNTS))?;
        for m in entries {
            let fstype = match pb::Fstype::try_from(m.fstype as i32) {
                Ok(pb::Fstype::Unsupported) | Err(_) => m
                    .fsname
                    .clone()
                    .unwrap_or_else(|| format!("fstype({})", m.fstype)),
                Ok(t) => t.as_str_name().to_ascii_lowercase(),
            };
            out.push(Mount {
                mnt_id: m.mnt_id,
                parent_mnt_id: m.parent_mnt_id,
                mountpoint: m.mountpoint,
                root: m.root,
                fstype,
                source: m.source,
                options: m.options,
                external: m.ext_mount.unwrap_or(false) || m.ext_key.is_some(),
            });
        }
    }
    Ok(out)
}

/// `files.img`: every open file description of the tree, by id.
struct FileTable {
    by_id: HashMap<u32, pb::FileEntry>,
    /// tcp-stream-<inode hex>.img entries: (send queue, receive queue) by inode.
    tcp_queues: HashMap<u32, (u32, u32)>,
}

impl FileTable {
    fn load(images: &ImageSet) -> Result<FileTable, ImageError> {
        let mut by_id = HashMap::new();
        if let Some(bytes) = images.get("files.img") {
            let entries: Vec<pb::FileEntry> =
                decode_all("files.img", bytes, Head::Common(magic::FILES))?;
            for e in entries {
                by_id.insert(e.id, e);
            }
        }
        let mut tcp_queues = HashMap::new();
        for (name, bytes) in &images.files {
            let Some(hex) = name
                .strip_prefix("tcp-stream-")
                .and_then(|n| n.strip_suffix(".img"))
            else {
                continue;
            };
            let Ok(ino) = u32::from_str_radix(hex, 16) else {
                continue;
            };
            let t: pb::TcpStreamEntry = decode_first(name, bytes, Head::Common(magic::TCP_STREAM))?;
            tcp_queues.insert(ino, (t.outq_len, t.inq_len));
        }
        Ok(FileTable { by_id, tcp_queues })
    }

    fn path_of(&self, id: u32) -> Option<String> {
        self.by_id
            .get(&id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone())
    }

    fn describe(&self, fd: u32, id: u32, fd_type: i32) -> OpenFile {
        let kind_of = |t: i32| -> &'static str {
            match pb::FdTypes::try_from(t) {
                Ok(pb::FdTypes::Reg) => "file",
                Ok(pb::FdTypes::Pipe) => "pipe",
                Ok(pb::FdTypes::Fifo) => "fifo",
                Ok(pb::FdTypes::Inetsk) => "inet",
                Ok(pb::FdTypes::Unixsk) => "unix",
                Ok(pb::FdTypes::Eventfd) => "eventfd",
                Ok(pb::FdTypes::Eventpoll) => "eventpoll",
                Ok(pb::FdTypes::Inotify) => "inotify",
                Ok(pb::FdTypes::Signalfd) => "signalfd",
                Ok(pb::FdTypes::Packetsk) => "packet",
                Ok(pb::FdTypes::Tty) => "tty",
                Ok(pb::FdTypes::Fanotify) => "fanotify",
                Ok(pb::FdTypes::Netlinksk) => "netlink",
                Ok(pb::FdTypes::Ns) => "ns",
                Ok(pb::FdTypes::Tunf) => "tun",
                Ok(pb::FdTypes::Ext) => "ext",
                Ok(pb::FdTypes::Timerfd) => "timerfd",
                Ok(pb::FdTypes::Memfd) => "memfd",
                _ => "unknown",
            }
        };
        let mut out = OpenFile {
            fd,
            kind: kind_of(fd_type).to_owned(),
            path: String::new(),
            mode: None,
            pos: None,
            socket: None,
        };
        let Some(f) = self.by_id.get(&id) else {
            out.path = format!("(file id {id} not in files.img)");
            return out;
        };
        out.kind = kind_of(f.r#type).to_owned();
        if let Some(r) = &f.reg {
            out.path = r.name.clone();
            out.mode = Some(access_mode(r.flags));
            out.pos = Some(r.pos);
        } else if let Some(p) = &f.pipe {
            out.path = format!("pipe:[{}]", p.pipe_id);
            out.mode = Some(access_mode(p.flags));
        } else if let Some(p) = &f.fifo {
            out.path = format!("fifo:[{}]", p.pipe_id);
        } else if let Some(t) = &f.tty {
            out.path = match t.regf_id.and_then(|id| self.path_of(id)) {
                Some(p) => p,
                None => format!("tty:[{}]", t.tty_info_id),
            };
        } else if let Some(s) = &f.isk {
            let sock = inet_socket(s, self.tcp_queues.get(&s.ino).copied());
            out.path = format!(
                "{} {} {} -> {}",
                sock.protocol, sock.state, sock.local, sock.remote
            );
            out.socket = Some(sock);
        } else if let Some(s) = &f.usk {
            let sock = unix_socket(s);
            out.path = format!("unix {} {}", sock.state, sock.local);
            out.socket = Some(sock);
        } else if let Some(s) = &f.psk {
            let sock = Socket {
                protocol: "packet".into(),
                state: String::new(),
                sock_type: sock_type(s.r#type).into(),
                local: format!("ifindex {} proto {:#06x}", s.ifindex, s.protocol),
                remote: String::new(),
                inode: 0,
                send_queue: None,
                recv_queue: None,
            };
            out.path = format!("packet {}", sock.local);
            out.socket = Some(sock);
        } else if let Some(s) = &f.nlsk {
            let sock = Socket {
                protocol: "netlink".into(),
                state: String::new(),
                sock_type: "raw".into(),
                local: format!("proto {} portid {}", s.protocol, s.portid),
                remote: format!("portid {}", s.dst_portid),
                inode: s.ino,
                send_queue: None,
                recv_queue: None,
            };
            out.path = format!("netlink {}", sock.local);
            out.socket = Some(sock);
        } else if let Some(m) = &f.memfd {
            out.path = format!("memfd:[{}]", m.inode_id);
            out.pos = Some(m.pos);
        } else if let Some(n) = &f.nsf {
            out.path = format!("ns:[{}]", n.ns_id);
        } else {
            out.path = format!("{}:[{id}]", out.kind);
        }
        out
    }
}

fn access_mode(flags: u32) -> String {
    match flags & 3 {
        0 => "r",
        1 => "w",
        _ => "rw",
    }
    .into()
}

fn sock_type(t: u32) -> &'static str {
    match t {
        1 => "stream",
        2 => "dgram",
        3 => "raw",
        5 => "seqpacket",
        _ => "other",
    }
}

/// Kernel TCP state names (also used for unix sockets' states).
fn tcp_state(state: u32) -> String {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        n => return format!("STATE({n})"),
    }
    .into()
}

/// CRIU keeps addresses as the kernel's big-endian 32-bit words, stored as host integers.
fn inet_addr(family: u32, words: &[u32], port: u32) -> String {
    let mut bytes = Vec::with_capacity(16);
    for w in words {
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    match family {
        2 => {
            let b: [u8; 4] = bytes
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .unwrap_or_default();
            format!("{}:{port}", std::net::Ipv4Addr::from(b))
        }
        _ => {
            let b: [u8; 16] = bytes
                .get(..16)
                .and_then(|s| s.try_into().ok())
                .unwrap_or_default();
            format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
    }
}

fn inet_socket(s: &pb::InetSkEntry, queues: Option<(u32, u32)>) -> Socket {
    let base = match s.proto {
        6 => "tcp",
        17 => "udp",
        136 => "udplite",
        _ => "raw",
    };
    let protocol = if s.family == 10 {
        format!("{base}6")
    } else {
        base.to_owned()
    };
    let state = if s.proto == 17 && s.state == 7 {
        "UNCONN".to_owned()
    } else {
        tcp_state(s.state)
    };
    Socket {
        protocol,
        state,
        sock_type: sock_type(s.r#type).into(),
        local: inet_addr(s.family, &s.src_addr, s.src_port),
        remote: inet_addr(s.family, &s.dst_addr, s.dst_port),
        inode: s.ino,
        send_queue: queues.map(|q| q.0),
        recv_queue: queues.map(|q| q.1),
    }
}

fn unix_socket(s: &pb::UnixSkEntry) -> Socket {
    let name = |n: &[u8]| -> String {
        // Names bound with the whole sockaddr length keep trailing NULs.
        let n = match n.iter().rposition(|&b| b != 0) {
            Some(last) if n[0] != 0 => &n[..=last],
            _ => n,
        };
        if n.is_empty() {
            String::new()
        } else if n[0] == 0 {
            format!("@{}", String::from_utf8_lossy(&n[1..]))
        } else {
            String::from_utf8_lossy(n).into_owned()
        }
    };
    Socket {
        protocol: "unix".into(),
        state: tcp_state(s.state),
        sock_type: sock_type(s.r#type).into(),
        local: name(&s.name),
        remote: if s.peer != 0 {
            format!("peer ino {}", s.peer)
        } else {
            String::new()
        },
        inode: s.ino,
        send_queue: None,
        recv_queue: None,
    }
}
