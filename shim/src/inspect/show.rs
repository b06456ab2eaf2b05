//! `ckpt-shim inspect ARCHIVE`: what a checkpoint holds.

use crate::archive::Want;
use std::path::PathBuf;
use std::process::ExitCode;

use super::report::{self, Sections};
use super::{fail, print_json, render, Format};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint archive (.tar, .tar.gz, .tar.zst) or an unpacked checkpoint / CRIU image directory
    pub archive: PathBuf,
    /// Show the process tree
    #[arg(long)]
    pub ps_tree: bool,
    /// With the process tree: each process's command line, read from its memory pages
    #[arg(long, alias = "ps-tree-cmd")]
    pub cmd: bool,
    /// With the process tree: each process's environment, read from its memory pages
    #[arg(long, alias = "ps-tree-env")]
    pub env: bool,
    /// Open files per process
    #[arg(long)]
    pub files: bool,
    /// Open sockets per process (TCP, UDP, unix, packet, netlink)
    #[arg(long)]
    pub sockets: bool,
    /// The container's mounts
    #[arg(long)]
    pub mounts: bool,
    /// CRIU's dump statistics
    #[arg(long)]
    pub stats: bool,
    /// Everything above
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

impl Args {
    pub fn sections(&self) -> Sections {
        if self.all {
            return Sections::all();
        }
        Sections {
            ps_tree: self.ps_tree || self.cmd || self.env,
            cmd: self.cmd,
            env: self.env,
            files: self.files,
            sockets: self.sockets,
            mounts: self.mounts,
            stats: self.stats,
        }
    }
}

pub fn run(args: Args) -> ExitCode {
    super::default_sigpipe();
    let sections = args.sections();
    let result = (|| -> anyhow::Result<()> {
        let (cp, dump) = report::open(
            &args.archive,
            Want {
                pages: sections.needs_pages(),
                args_only: true,
                rootfs_listing: false,
                progress: true,
            },
        )?;
        let r = report::build(&cp, &dump, sections);
        match args.format {
            Format::Json => print_json(&r)?,
            Format::Tree => print!("{}", render::report_tree(&r)),
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}
