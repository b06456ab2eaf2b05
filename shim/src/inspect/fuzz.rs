//! The body of the whole-archive fuzz target (shim/fuzz `archives`): an input is written to
//! a temporary file and taken through everything `inspect --all`, `memparse` and `diff` do.
//! Kept in the crate so that tests/fuzz_corpus.rs replays its corpus on stable Rust.

use crate::archive::Want;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{diff, report};
use crate::criu::memory::{Memory, Pattern};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs one input. Must never panic; errors are expected for most inputs.
pub fn one_archive(data: &[u8]) {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!(
        "ckpt-shim-fuzz-{}-{}.tar",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    if written.is_ok() {
        if let Ok((cp, dump)) = report::open(
            &path,
            Want {
                pages: true,
                args_only: false,
                rootfs_listing: true,
                progress: false,
            },
        ) {
            let r = report::build(&cp, &dump, report::Sections::all());
            let _ = serde_json::to_string(&r);
            let _ = super::render::report_tree(&r);
            let d = diff::compute((&cp, &dump), (&cp, &dump));
            let _ = diff::render(&d);
            let pattern = Pattern::Literal(b"SECRET".to_vec());
            for p in &dump.processes {
                let Some(map) = &p.pagemap else { continue };
                let Some(pages) = cp.pages.get(&map.pages_file()) else {
                    continue;
                };
                if let Ok(mem) = Memory::new(map, pages) {
                    let _ = mem.search(&pattern, 16, |_| true);
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}
