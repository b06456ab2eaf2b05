//! `ckpt-shim memparse ARCHIVE`: what is in the processes' memory. With `--search` or
//! `--search-regex`, every match with its virtual address and surrounding bytes; without, a
//! per-process memory summary (and with `--pid`, that process's dumped page runs).

use crate::archive::Want;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use super::tree::{human, printable};
use super::{fail, print_json, report, Format};
use crate::criu::memory::{Memory, Pattern};
use crate::criu::pagemap::{PE_LAZY, PE_PARENT, PE_PRESENT};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint archive or directory
    pub archive: PathBuf,
    /// Only this process (a PID inside the checkpoint)
    #[arg(long)]
    pub pid: Option<u32>,
    /// Text to look for
    #[arg(long, conflicts_with = "search_regex")]
    pub search: Option<String>,
    /// Regular expression (bytes, Rust regex syntax) to look for
    #[arg(long)]
    pub search_regex: Option<String>,
    /// Bytes of context either side of a match (at most 65536)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(0..=65536))]
    pub context: u32,
    /// Stop after this many matches
    #[arg(long, default_value_t = 1000)]
    pub max_matches: usize,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
pub struct Match {
    pub pid: u32,
    /// Hex virtual address of the match.
    pub address: String,
    /// The matched bytes, control bytes escaped.
    pub text: String,
    pub context_address: String,
    pub context: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub pid: u32,
    pub comm: String,
    pub vm_bytes: u64,
    pub dumped_bytes: u64,
    pub parent_bytes: u64,
    pub lazy_bytes: u64,
    pub pages_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunInfo>>,
}

#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub start: String,
    pub end: String,
    pub pages: u64,
    /// present | lazy | parent, joined with '+'
    pub flags: String,
}

fn flag_names(f: u32) -> String {
    let mut v = Vec::new();
    if f & PE_PRESENT != 0 {
        v.push("present");
    }
    if f & PE_LAZY != 0 {
        v.push("lazy");
    }
    if f & PE_PARENT != 0 {
        v.push("parent");
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join("+")
    }
}

pub fn run(args: Args) -> ExitCode {
    super::default_sigpipe();
    let searching = args.search.is_some() || args.search_regex.is_some();
    let result = (|| -> anyhow::Result<()> {
        let (cp, dump) = report::open(
            &args.archive,
            Want {
                pages: searching,
                progress: true,
                ..Want::default()
            },
        )?;
        let procs: Vec<_> = match args.pid {
            Some(pid) => vec![dump.process(pid).with_context(|| {
                let pids: Vec<String> = dump.processes.iter().map(|p| p.pid.to_string()).collect();
                format!(
                    "no process {pid} in the checkpoint (processes: {})",
                    pids.join(", ")
                )
            })?],
            None => dump.processes.iter().collect(),
        };
        if !searching {
            let sums: Vec<Summary> = procs
                .iter()
                .map(|p| {
                    let m = p.memory.clone().unwrap_or_default();
                    Summary {
                        pid: p.pid,
                        comm: p.comm.clone(),
                        vm_bytes: m.vm_bytes,
                        dumped_bytes: m.dumped_bytes,
                        parent_bytes: m.parent_bytes,
                        lazy_bytes: m.lazy_bytes,
                        pages_file: m.pages_file,
                        runs: args.pid.and(p.pagemap.as_ref()).map(|map| {
                            map.runs
                                .iter()
                                .map(|r| RunInfo {
                                    start: format!("{:#x}", r.vaddr),
                                    end: format!("{:#x}", r.end()),
                                    pages: r.nr_pages,
                                    flags: flag_names(r.flags),
                                })
                                .collect()
                        }),
                    }
                })
                .collect();
            match args.format {
                Format::Json => print_json(&sums)?,
                Format::Tree => {
                    println!(
                        "{:>8}  {:<16} {:>10} {:>10} {:>10} {:>10}  PAGES FILE",
                        "PID", "COMM", "VM", "DUMPED", "PARENT", "LAZY"
                    );
                    for s in &sums {
                        println!(
                            "{:>8}  {:<16} {:>10} {:>10} {:>10} {:>10}  {}",
                            s.pid,
                            printable(s.comm.as_bytes()),
                            human(s.vm_bytes),
                            human(s.dumped_bytes),
                            human(s.parent_bytes),
                            human(s.lazy_bytes),
                            s.pages_file.as_deref().unwrap_or("-")
                        );
                        for r in s.runs.iter().flatten() {
                            println!(
                                "          {}-{} {:>8} pages  {}",
                                r.start, r.end, r.pages, r.flags
                            );
                        }
                    }
                }
            }
            return Ok(());
        }
        let pattern = match (&args.search, &args.search_regex) {
            (Some(t), _) => Pattern::Literal(t.as_bytes().to_vec()),
            (None, Some(re)) => Pattern::Regex(
                regex::bytes::RegexBuilder::new(re)
                    .size_limit(1 << 24)
                    .build()
                    .with_context(|| format!("bad --search-regex {re:?}"))?,
            ),
            (None, None) => unreachable!("searching"),
        };
        let total: u64 = procs
            .iter()
            .filter_map(|p| p.memory.as_ref())
            .fold(0u64, |a, m| a.saturating_add(m.dumped_bytes));
        let bar = crate::archive::source::progress(&args.archive, total, true);
        bar.set_message("searching memory");
        let mut matches = Vec::new();
        for p in procs {
            let Some(map) = &p.pagemap else { continue };
            let pages = cp.pages.get(&map.pages_file()).with_context(|| {
                format!(
                    "{} (process {}) is not in the checkpoint",
                    map.pages_file(),
                    p.pid
                )
            })?;
            let mem = Memory::new(map, pages)?;
            mem.search_with_progress(
                &pattern,
                args.context as usize,
                |n| bar.inc(n),
                |h| {
                    matches.push(Match {
                        pid: p.pid,
                        address: format!("{:#x}", h.vaddr),
                        text: printable(&h.bytes),
                        context_address: format!("{:#x}", h.context_start),
                        context: printable(&h.context),
                    });
                    matches.len() < args.max_matches
                },
            )?;
            if matches.len() >= args.max_matches {
                break;
            }
        }
        bar.finish_and_clear();
        match args.format {
            Format::Json => print_json(&matches)?,
            Format::Tree => {
                for m in &matches {
                    println!("pid {} at {}: {}", m.pid, m.address, m.context);
                }
                println!(
                    "{} match(es){}",
                    matches.len(),
                    if matches.len() >= args.max_matches {
                        " (limit reached)"
                    } else {
                        ""
                    }
                );
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
