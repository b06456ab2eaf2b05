//! `ckpt-shim diff A B`: what changed between two checkpoints of one container: processes,
//! open files, sockets, memory size and the root filesystem.

use crate::archive::Want;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::report::{self, Sections};
use super::tree::{human, printable, Node};
use super::{fail, print_json, Format};
use crate::archive::Checkpoint;
use crate::criu::Dump;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older checkpoint
    pub a: PathBuf,
    /// The newer checkpoint
    pub b: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// A process identified across checkpoints by pid and command name.
#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct ProcId {
    pub pid: u32,
    pub comm: String,
}

#[derive(Debug, Serialize, Default)]
pub struct Changes<T> {
    pub added: Vec<T>,
    pub removed: Vec<T>,
}

#[derive(Debug, Serialize)]
pub struct MemoryChange {
    pub pid: u32,
    pub before: u64,
    pub after: u64,
}

#[derive(Debug, Serialize)]
pub struct Diff {
    pub schema: &'static str,
    pub a: String,
    pub b: String,
    /// Set when A and B are not of the same container.
    pub warning: Option<String>,
    pub checkpointed: (Option<String>, Option<String>),
    pub processes: Changes<ProcId>,
    /// "pid fd path" lines.
    pub files: Changes<String>,
    /// "pid fd protocol state local -> remote" lines.
    pub sockets: Changes<String>,
    pub memory_total: (u64, u64),
    pub memory: Vec<MemoryChange>,
    pub rootfs_diff_size: (Option<u64>, Option<u64>),
    /// Rootfs paths changed in B but not (or differently) in A, and the reverse.
    pub rootfs: Changes<String>,
}

fn changes<T: Ord + Clone>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> Changes<T> {
    Changes {
        added: b.difference(a).cloned().collect(),
        removed: a.difference(b).cloned().collect(),
    }
}

fn sets(dump: &Dump) -> (BTreeSet<ProcId>, BTreeSet<String>, BTreeSet<String>) {
    let mut procs = BTreeSet::new();
    let mut files = BTreeSet::new();
    let mut socks = BTreeSet::new();
    for p in &dump.processes {
        procs.insert(ProcId {
            pid: p.pid,
            comm: p.comm.clone(),
        });
        for f in &p.files {
            match &f.socket {
                Some(s) => {
                    let remote = if s.remote.is_empty() || s.state == "LISTEN" {
                        String::new()
                    } else {
                        format!(" -> {}", s.remote)
                    };
                    socks.insert(format!(
                        "{} {} {} {} {}{remote}",
                        p.pid, f.fd, s.protocol, s.state, s.local
                    ));
                }
                None => {
                    files.insert(format!("{} {} {}", p.pid, f.fd, f.path));
                }
            }
        }
    }
    (procs, files, socks)
}

fn rootfs_set(cp: &Checkpoint) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    if let Some(changes) = cp.rootfs_diff.as_ref().and_then(|d| d.changes.as_ref()) {
        for c in changes {
            s.insert(format!("{} {} {}", c.kind, c.path, c.size));
        }
    }
    for d in cp.deleted_files.iter().flatten() {
        s.insert(format!("deleted {d} 0"));
    }
    s
}

pub fn compute(a: (&Checkpoint, &Dump), b: (&Checkpoint, &Dump)) -> Diff {
    let ra = report::build(a.0, a.1, Sections::default());
    let rb = report::build(b.0, b.1, Sections::default());
    let warning = (ra.container.name != rb.container.name
        || ra.container.pod != rb.container.pod
        || ra.container.namespace != rb.container.namespace)
        .then(|| {
            format!(
                "not the same container: {:?}/{:?}/{:?} vs {:?}/{:?}/{:?}",
                ra.container.namespace,
                ra.container.pod,
                ra.container.name,
                rb.container.namespace,
                rb.container.pod,
                rb.container.name
            )
        });
    let (pa, fa, sa) = sets(a.1);
    let (pb, fb, sb) = sets(b.1);
    let mem = |d: &Dump| -> BTreeMap<u32, u64> {
        d.processes
            .iter()
            .map(|p| (p.pid, p.memory.as_ref().map_or(0, |m| m.dumped_bytes)))
            .collect()
    };
    let (ma, mb) = (mem(a.1), mem(b.1));
    let memory = ma
        .iter()
        .filter_map(|(pid, before)| {
            let after = *mb.get(pid)?;
            (after != *before).then_some(MemoryChange {
                pid: *pid,
                before: *before,
                after,
            })
        })
        .collect();
    Diff {
        schema: "ckpt-shim.diff/v1",
        a: a.0.path.display().to_string(),
        b: b.0.path.display().to_string(),
        warning,
        checkpointed: (ra.container.checkpointed, rb.container.checkpointed),
        processes: changes(&pa, &pb),
        files: changes(&fa, &fb),
        sockets: changes(&sa, &sb),
        memory_total: (a.1.dumped_bytes(), b.1.dumped_bytes()),
        memory,
        rootfs_diff_size: (ra.sizes.rootfs_diff, rb.sizes.rootfs_diff),
        rootfs: changes(&rootfs_set(a.0), &rootfs_set(b.0)),
    }
}

fn section<T>(root: &mut Node, title: &str, c: &Changes<T>, show: impl Fn(&T) -> String) {
    let mut n = Node::new(format!(
        "{title}: {} added, {} removed",
        c.added.len(),
        c.removed.len()
    ));
    for x in &c.added {
        n.leaf(format!("+ {}", printable(show(x).as_bytes())));
    }
    for x in &c.removed {
        n.leaf(format!("- {}", printable(show(x).as_bytes())));
    }
    root.child(n);
}

pub fn render(d: &Diff) -> String {
    let mut root = Node::new(format!("{} -> {}", d.a, d.b));
    if let Some(w) = &d.warning {
        root.leaf(format!("WARNING: {w}"));
    }
    root.field(
        "Checkpointed",
        Some(format!(
            "{} -> {}",
            d.checkpointed.0.as_deref().unwrap_or("?"),
            d.checkpointed.1.as_deref().unwrap_or("?")
        )),
    );
    section(&mut root, "Processes", &d.processes, |p| {
        format!("[{}] {}", p.pid, p.comm)
    });
    section(&mut root, "Open files", &d.files, String::clone);
    section(&mut root, "Sockets", &d.sockets, String::clone);
    let mut m = Node::new(format!(
        "Memory dumped: {} -> {}",
        human(d.memory_total.0),
        human(d.memory_total.1)
    ));
    for c in &d.memory {
        m.leaf(format!(
            "[{}] {} -> {}",
            c.pid,
            human(c.before),
            human(c.after)
        ));
    }
    root.child(m);
    let size = |s: Option<u64>| s.map(human).unwrap_or_else(|| "none".into());
    root.leaf(format!(
        "Root FS diff size: {} -> {}",
        size(d.rootfs_diff_size.0),
        size(d.rootfs_diff_size.1)
    ));
    section(&mut root, "Root FS changes", &d.rootfs, String::clone);
    root.render()
}

pub fn run(args: Args) -> ExitCode {
    super::default_sigpipe();
    let result = (|| -> anyhow::Result<()> {
        let want = Want {
            rootfs_listing: true,
            progress: true,
            ..Want::default()
        };
        let a = report::open(&args.a, want)?;
        let b = report::open(&args.b, want)?;
        let d = compute((&a.0, &a.1), (&b.0, &b.1));
        match args.format {
            Format::Json => print_json(&d)?,
            Format::Tree => print!("{}", render(&d)),
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
