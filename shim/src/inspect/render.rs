//! The `tree` rendering of an inspection report.

use std::collections::BTreeMap;

use super::report::{ProcessReport, Report};
use super::tree::{human, printable, Node};

pub fn report_tree(r: &Report) -> String {
    let c = &r.container;
    let mut root = Node::new(format!(
        "{} ({})",
        c.name.as_deref().unwrap_or("(unnamed container)"),
        r.archive.path
    ));
    root.field("Engine", Some(&c.engine))
        .field("Pod", c.pod.as_ref())
        .field("Namespace", c.namespace.as_ref())
        .field("Image", c.image.as_ref())
        .field("ID", c.id.as_ref())
        .field("Runtime", c.runtime.as_ref())
        .field("Created", c.created.as_ref())
        .field("Checkpointed", c.checkpointed.as_ref())
        .field("CRIU version", r.criu.version.as_ref())
        .field("Archive size", Some(human(r.archive.size)))
        .field("Memory pages size", Some(human(r.sizes.memory_pages)))
        .field("Root FS diff size", r.sizes.rootfs_diff.map(human));
    if let Some(s) = &r.stats {
        let mut n = Node::new("CRIU dump statistics");
        n.leaf(format!("Freezing time: {} us", s.freezing_time_us))
            .leaf(format!("Frozen time: {} us", s.frozen_time_us))
            .leaf(format!("Memory dump time: {} us", s.memdump_time_us))
            .leaf(format!("Memory write time: {} us", s.memwrite_time_us))
            .leaf(format!("Pages scanned: {}", s.pages_scanned))
            .leaf(format!("Pages written: {}", s.pages_written));
        root.child(n);
    }
    if let Some(procs) = &r.processes {
        let mut n = Node::new("Process tree");
        let by_parent = children_of(procs);
        let pids: std::collections::HashSet<u32> = procs.iter().map(|p| p.pid).collect();
        for p in procs
            .iter()
            .filter(|p| !pids.contains(&p.ppid) || p.ppid == p.pid)
        {
            n.child(process_node(p, &by_parent, 0));
        }
        root.child(n);
    }
    if let Some(mounts) = &r.mounts {
        let mut n = Node::new("Overview of mounts");
        if mounts.is_empty() {
            n.leaf("(no mount namespace in the checkpoint)");
        }
        for m in mounts {
            let mut mn = Node::new(format!("Destination: {}", m.mountpoint));
            mn.leaf(format!("Type: {}", m.fstype))
                .leaf(format!("Source: {}", m.source));
            if m.root != "/" {
                mn.leaf(format!("Root: {}", m.root));
            }
            if m.external {
                mn.leaf("External (bind mount from the host)");
            }
            n.child(mn);
        }
        root.child(n);
    }
    root.render()
}

fn children_of(procs: &[ProcessReport]) -> BTreeMap<u32, Vec<&ProcessReport>> {
    let mut map: BTreeMap<u32, Vec<&ProcessReport>> = BTreeMap::new();
    for p in procs {
        if p.ppid != p.pid {
            map.entry(p.ppid).or_default().push(p);
        }
    }
    map
}

fn process_node(
    p: &ProcessReport,
    by_parent: &BTreeMap<u32, Vec<&ProcessReport>>,
    depth: usize,
) -> Node {
    let mut n = Node::new(format!("[{}] {}", p.pid, printable(p.comm.as_bytes())));
    if let Some(cmd) = &p.cmdline {
        n.leaf(format!("Command: {}", printable(cmd.join(" ").as_bytes())));
    }
    if let Some(env) = &p.environ {
        let mut e = Node::new("Environment variables");
        for v in env {
            e.leaf(printable(v.as_bytes()));
        }
        n.child(e);
    }
    if let Some(err) = &p.memory_error {
        n.leaf(format!("Memory: {err}"));
    }
    if let Some(files) = &p.files {
        let mut f = Node::new("Open files");
        if let Some(cwd) = &p.cwd {
            f.leaf(format!("[cwd] {cwd}"));
        }
        if let Some(root) = &p.root {
            f.leaf(format!("[root] {root}"));
        }
        for file in files {
            let mode = file
                .mode
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            f.leaf(format!(
                "[{}] {}{mode}",
                file.fd,
                printable(file.path.as_bytes())
            ));
        }
        n.child(f);
    }
    if let Some(socks) = &p.sockets {
        if !socks.is_empty() {
            let mut s = Node::new("Open sockets");
            for sk in socks {
                let sock = &sk.socket;
                let mut label = format!(
                    "[{}] {} {} {}",
                    sk.fd,
                    sock.protocol,
                    sock.state,
                    printable(sock.local.as_bytes())
                );
                if !sock.remote.is_empty() && sock.state != "LISTEN" {
                    label.push_str(&format!(" -> {}", printable(sock.remote.as_bytes())));
                }
                s.leaf(label);
            }
            n.child(s);
        }
    }
    // A hostile pstree could loop; depth bounds the recursion.
    if depth < 256 {
        for c in by_parent.get(&p.pid).into_iter().flatten() {
            n.child(process_node(c, by_parent, depth + 1));
        }
    }
    n
}
