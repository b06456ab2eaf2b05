//! `ckpt-shim list [DIR...]`: one line per checkpoint archive, with whether its sha256
//! matches the digest in its sidecar `<archive>.json` (`sha256: "<hex>"` as ckpt-shim
//! writes it, or `digest: "sha256:<hex>"`, and `size`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::tree::human;
use super::{fail, print_json, Format};
use crate::archive;
use crate::archive::metadata;

/// Where kubelet writes checkpoint archives (FACTS 5).
pub const KUBELET_CHECKPOINTS: &str = "/var/lib/kubelet/checkpoints";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directories to list [default: /var/lib/kubelet/checkpoints]
    pub dirs: Vec<PathBuf>,
    /// Do not hash archives (faster; the digest column says "not checked")
    #[arg(long)]
    pub no_verify: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// One archive in the listing.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub path: String,
    pub container: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// When it was checkpointed (from config.dump), else the file's modification time.
    pub time: Option<String>,
    pub size: u64,
    /// ok | mismatch | no sidecar | bad sidecar | not checked
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_archive(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    [".tar", ".tar.gz", ".tgz", ".tar.zst"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn sidecar_check(path: &Path, size: u64) -> String {
    let mut side = path.as_os_str().to_owned();
    side.push(".json");
    let Ok(text) = std::fs::read(PathBuf::from(side)) else {
        return "no sidecar".into();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return "bad sidecar".into();
    };
    // ckpt-shim writes `sha256: "<hex>"`; `digest: "sha256:<hex>"` is the OCI spelling.
    let want = v
        .get("sha256")
        .and_then(|d| d.as_str())
        .or_else(|| v.get("digest").and_then(|d| d.as_str()))
        .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_owned());
    let Some(want) = want.filter(|w| w.len() == 64) else {
        return "bad sidecar".into();
    };
    if let Some(s) = v.get("size").and_then(|s| s.as_u64()) {
        if s != size {
            return "mismatch".into();
        }
    }
    match sha256_file(path) {
        Ok(got) if got.eq_ignore_ascii_case(&want) => "ok".into(),
        Ok(_) => "mismatch".into(),
        Err(e) => format!("unreadable: {e}"),
    }
}

fn mtime(path: &Path) -> Option<String> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(format!("@{secs}"))
}

pub fn entry(path: &Path, verify: bool) -> Entry {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut e = Entry {
        path: path.display().to_string(),
        container: None,
        pod: None,
        namespace: None,
        time: None,
        size,
        digest: "not checked".into(),
        error: None,
    };
    match archive::scan(path, archive::Want::default()) {
        Ok(cp) => {
            let c = metadata::container(&cp);
            e.container = c.name;
            e.pod = c.pod;
            e.namespace = c.namespace;
            e.time = c.checkpointed;
        }
        Err(err) => e.error = Some(err.to_string()),
    }
    if e.time.is_none() {
        e.time = mtime(path);
    }
    if verify {
        e.digest = sidecar_check(path, size);
    }
    e
}

pub fn run(args: Args) -> ExitCode {
    super::default_sigpipe();
    let dirs = if args.dirs.is_empty() {
        vec![PathBuf::from(KUBELET_CHECKPOINTS)]
    } else {
        args.dirs
    };
    let result = (|| -> anyhow::Result<bool> {
        let mut paths = Vec::new();
        for d in &dirs {
            if d.is_file() {
                paths.push(d.clone());
                continue;
            }
            let rd = std::fs::read_dir(d).map_err(|e| anyhow::anyhow!("{}: {e}", d.display()))?;
            for ent in rd {
                let p = ent?.path();
                if p.is_file() && is_archive(&p) {
                    paths.push(p);
                }
            }
        }
        paths.sort();
        let entries: Vec<Entry> = paths.iter().map(|p| entry(p, !args.no_verify)).collect();
        let bad = entries
            .iter()
            .any(|e| e.error.is_some() || e.digest == "mismatch");
        match args.format {
            Format::Json => print_json(&entries)?,
            Format::Tree => {
                println!(
                    "{:<24} {:<24} {:<16} {:<26} {:>10}  {:<12} ARCHIVE",
                    "CONTAINER", "POD", "NAMESPACE", "CHECKPOINTED", "SIZE", "DIGEST"
                );
                let d = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
                for e in &entries {
                    println!(
                        "{:<24} {:<24} {:<16} {:<26} {:>10}  {:<12} {}{}",
                        d(&e.container),
                        d(&e.pod),
                        d(&e.namespace),
                        d(&e.time),
                        human(e.size),
                        e.digest,
                        e.path,
                        e.error
                            .as_ref()
                            .map(|x| format!("  (error: {x})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
        Ok(bad)
    })();
    match result {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::FAILURE,
        Err(e) => fail(&e),
    }
}
