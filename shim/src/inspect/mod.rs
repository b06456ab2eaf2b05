//! The forensic commands (`inspect`, `list`, `memparse`, `diff`): read checkpoint archives
//! through `archive` and `criu`, never through the proxy. Each command is one file with the
//! same shape: its clap arguments, then `run`, which returns the process exit code.

pub mod diff;
pub mod fuzz;
pub mod list;
pub mod memparse;
pub mod render;
pub mod report;
pub mod show;
pub mod tree;

/// `tree` for people, `json` for programs (schema in docs/inspect-json.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Tree,
    Json,
}

/// Lets `ckpt-shim inspect ... | head` end quietly: the default SIGPIPE action instead of
/// Rust's ignore-and-panic-on-EPIPE. Only the one-shot commands call this, never `serve`.
/// nix's `signal` is unsafe too (a handler could be any function); SIG_DFL is none.
#[allow(unsafe_code)]
pub fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: the default disposition runs no code of this program.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Prints an error the way every command does and returns the failure code.
pub(crate) fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("ckpt-shim: {e:#}");
    std::process::ExitCode::FAILURE
}

pub(crate) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}
