//! The one configuration file, `/etc/ckpt-shim/config.toml` by default.
//!
//! Every key is documented in `config/ckpt-shim.toml`. Unknown keys and bad values stop the
//! shim at start with the file, the line and the reason: a typo must never silently fall
//! back to a default on a production node.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/ckpt-shim/config.toml";
pub const DEFAULT_LISTEN: &str = "unix:///run/ckpt-shim/ckpt-shim.sock";
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// kubelet's own gRPC message limit, in both directions.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The settings the shim runs with, after the file and the flags are combined and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<u32>,
    pub allowed_uids: Vec<u32>,
    pub shutdown_grace: Duration,
    pub max_message_bytes: usize,
    pub worker_threads: usize,
    pub runtime_endpoint: PathBuf,
    pub connect_timeout: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    pub checkpoint: CheckpointSettings,
    pub restore: RestoreSettings,
}

/// How a container whose image is a checkpoint is restored, and what may be restored
/// (`[restore]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSettings {
    pub mode: RestoreMode,
    /// Directories a checkpoint archive named as an image may come from.
    pub allowed_dirs: Vec<PathBuf>,
    /// Where checkpoints are unpacked for the runc wrapper (root only).
    pub staging_dir: PathBuf,
    /// Restore into a pod of another namespace than the checkpointed one.
    pub allow_cross_namespace: bool,
    /// Honour the checkpoint-restore-operator's sandbox annotation
    /// `restore.criu.org/checkpoint-path.<container>`.
    pub operator_annotations: bool,
    /// An archive without a sidecar (`<archive>.json`) is refused.
    pub require_sidecar: bool,
    /// Seconds `runc restore` may take before the wrapper kills it.
    pub watchdog_seconds: u64,
    /// The largest single archive member, and the most an archive may unpack to.
    pub max_member_bytes: u64,
    pub max_archive_bytes: u64,
    /// The file name containerd's `BinaryName` must have for wrapper restores.
    pub wrapper_binary: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// The runtime's own restore where it has one (containerd 2.1-2.3), the wrapper elsewhere.
    Auto,
    Native,
    Wrapper,
}

impl Default for RestoreSettings {
    fn default() -> Self {
        RestoreSettings {
            mode: RestoreMode::Auto,
            allowed_dirs: vec![PathBuf::from("/var/lib/kubelet/checkpoints")],
            staging_dir: PathBuf::from("/var/lib/ckpt-shim/restore"),
            allow_cross_namespace: false,
            operator_annotations: false,
            require_sidecar: false,
            watchdog_seconds: 60,
            max_member_bytes: 64 << 30,
            max_archive_bytes: 256 << 30,
            wrapper_binary: "ckpt-shim-runc".into(),
        }
    }
}

/// How CheckpointContainer is done and what it may do (`[checkpoint]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSettings {
    pub mode: CheckpointMode,
    /// Directories an archive may be written into (after resolving symlinks).
    pub allowed_dirs: Vec<PathBuf>,
    /// Where CRIU images are staged while the shim builds an archive itself.
    pub work_dir: PathBuf,
    /// Where the CRIU log of a failed checkpoint is kept for debugging.
    pub failed_log_dir: PathBuf,
    /// containerd namespace of CRI's containers.
    pub containerd_namespace: String,
    /// Pod namespaces that may be checkpointed; empty: all not denied.
    pub allowed_namespaces: Vec<String>,
    pub denied_namespaces: Vec<String>,
    /// Largest archive the shim writes; 0: no limit.
    pub max_archive_bytes: u64,
    /// Append-only JSON-lines audit log; None: no audit.
    pub audit_log: Option<PathBuf>,
    /// CRIU options a pod or container may ask for with the `ckpt-shim.io/criu-options`
    /// annotation.
    pub allowed_criu_options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// Native where the runtime's CRI implements CheckpointContainer, emulated elsewhere.
    Auto,
    Native,
    Emulate,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            mode: CheckpointMode::Auto,
            allowed_dirs: vec![PathBuf::from("/var/lib/kubelet/checkpoints")],
            work_dir: PathBuf::from("/var/lib/ckpt-shim/work"),
            failed_log_dir: PathBuf::from("/var/lib/ckpt-shim/failed"),
            containerd_namespace: "k8s.io".into(),
            allowed_namespaces: Vec::new(),
            denied_namespaces: Vec::new(),
            max_archive_bytes: 0,
            audit_log: Some(PathBuf::from("/var/log/ckpt-shim/audit.jsonl")),
            allowed_criu_options: Vec::new(),
        }
    }
}

/// The CRIU options the annotation may name (runc's checkpoint options).
pub const CRIU_OPTIONS: &[&str] = &[
    "tcp-established",
    "file-locks",
    "external-unix-sockets",
    "shell-job",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise (journald, files, collectors).
    Auto,
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: PathBuf::from("/run/ckpt-shim/ckpt-shim.sock"),
            socket_mode: 0o660,
            socket_group: None,
            allowed_uids: vec![0],
            shutdown_grace: Duration::from_secs(10),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            worker_threads: 1,
            runtime_endpoint: PathBuf::from("/run/containerd/containerd.sock"),
            connect_timeout: Duration::from_secs(2),
            log_level: "info".into(),
            log_format: LogFormat::Auto,
            checkpoint: CheckpointSettings::default(),
            restore: RestoreSettings::default(),
        }
    }
}

/// A configuration problem, located in the file where it has a place there.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct ConfigError {
    pub location: String,
    pub reason: String,
}

impl ConfigError {
    fn at(file: &Path, text: &str, span: Range<usize>, reason: impl Into<String>) -> Self {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        ConfigError {
            location: format!("{}:{line}", file.display()),
            reason: reason.into(),
        }
    }

    fn flag(flag: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            location: format!("flag {flag}"),
            reason: reason.into(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    runtime: RuntimeSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    checkpoint: CheckpointSection,
    #[serde(default)]
    restore: RestoreSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestoreSection {
    mode: Option<Spanned<String>>,
    allowed_dirs: Option<Spanned<Vec<String>>>,
    staging_dir: Option<Spanned<String>>,
    allow_cross_namespace: Option<bool>,
    operator_annotations: Option<bool>,
    require_sidecar: Option<bool>,
    watchdog_seconds: Option<Spanned<u64>>,
    max_member_bytes: Option<Spanned<u64>>,
    max_archive_bytes: Option<Spanned<u64>>,
    wrapper_binary: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CheckpointSection {
    mode: Option<Spanned<String>>,
    allowed_dirs: Option<Spanned<Vec<String>>>,
    work_dir: Option<Spanned<String>>,
    failed_log_dir: Option<Spanned<String>>,
    containerd_namespace: Option<Spanned<String>>,
    allowed_namespaces: Option<Vec<String>>,
    denied_namespaces: Option<Vec<String>>,
    max_archive_bytes: Option<u64>,
    audit_log: Option<Spanned<String>>,
    allowed_criu_options: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<Spanned<String>>,
    socket_mode: Option<Spanned<String>>,
    socket_group: Option<Spanned<String>>,
    allowed_uids: Option<Vec<u32>>,
    shutdown_grace_seconds: Option<Spanned<u64>>,
    max_message_bytes: Option<Spanned<u64>>,
    worker_threads: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuntimeSection {
    endpoint: Option<Spanned<String>>,
    connect_timeout_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub runtime_endpoint: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
}

impl Config {
    /// Loads `path`; when `path` is None the default file is used if it exists.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        if let Some(file) = file {
            let text = std::fs::read_to_string(&file).map_err(|e| ConfigError {
                location: file.display().to_string(),
                reason: format!("cannot read: {e}"),
            })?;
            config.apply_file(&file, &text)?;
        }
        config.apply_overrides(overrides)?;
        Ok(config)
    }

    /// Parses `text` (the content of `file`) onto these settings.
    pub fn apply_file(&mut self, file: &Path, text: &str) -> Result<(), ConfigError> {
        let parsed: File = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ConfigError::at(file, text, span, e.message().to_string())
        })?;
        let at = |s: Range<usize>, reason: String| ConfigError::at(file, text, s, reason);

        let server = parsed.server;
        if let Some(v) = server.listen {
            self.listen = unix_path(v.get_ref()).map_err(|r| at(v.span(), r))?;
        }
        if let Some(v) = server.socket_mode {
            self.socket_mode = parse_mode(v.get_ref()).map_err(|r| at(v.span(), r))?;
        }
        if let Some(v) = server.socket_group {
            self.socket_group = Some(resolve_group(v.get_ref()).map_err(|r| at(v.span(), r))?);
        }
        if let Some(v) = server.allowed_uids {
            self.allowed_uids = v;
        }
        if let Some(v) = server.shutdown_grace_seconds {
            if *v.get_ref() > 3600 {
                return Err(at(
                    v.span(),
                    "shutdown_grace_seconds must be at most 3600".into(),
                ));
            }
            self.shutdown_grace = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = server.max_message_bytes {
            let n = *v.get_ref();
            // gRPC's prefix holds a 32-bit length; below 4 KiB even Version would not fit.
            if !(4096..=u32::MAX as u64).contains(&n) {
                return Err(at(
                    v.span(),
                    format!(
                        "max_message_bytes must be between 4096 and {}, got {n}",
                        u32::MAX
                    ),
                ));
            }
            self.max_message_bytes = n as usize;
        }
        if let Some(v) = server.worker_threads {
            let n = *v.get_ref();
            if !(1..=64).contains(&n) {
                return Err(at(
                    v.span(),
                    format!("worker_threads must be between 1 and 64, got {n}"),
                ));
            }
            self.worker_threads = n as usize;
        }

        let runtime = parsed.runtime;
        if let Some(v) = runtime.endpoint {
            self.runtime_endpoint = unix_path(v.get_ref()).map_err(|r| at(v.span(), r))?;
        }
        if let Some(v) = runtime.connect_timeout_ms {
            let ms = *v.get_ref();
            if !(1..=60_000).contains(&ms) {
                return Err(at(
                    v.span(),
                    "connect_timeout_ms must be between 1 and 60000".into(),
                ));
            }
            self.connect_timeout = Duration::from_millis(ms);
        }

        self.checkpoint.apply(parsed.checkpoint, &at)?;
        self.restore.apply(parsed.restore, &at)?;

        let log = parsed.log;
        if let Some(v) = log.level {
            check_level(v.get_ref()).map_err(|r| at(v.span(), r))?;
            self.log_level = v.into_inner();
        }
        if let Some(v) = log.format {
            self.log_format = parse_format(v.get_ref()).map_err(|r| at(v.span(), r))?;
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(v) = &o.listen {
            self.listen = unix_path(v).map_err(|r| ConfigError::flag("--listen", r))?;
        }
        if let Some(v) = &o.runtime_endpoint {
            self.runtime_endpoint =
                unix_path(v).map_err(|r| ConfigError::flag("--runtime-endpoint", r))?;
        }
        if let Some(v) = &o.log_level {
            check_level(v).map_err(|r| ConfigError::flag("--log-level", r))?;
            self.log_level = v.clone();
        }
        if let Some(v) = &o.log_format {
            self.log_format = parse_format(v).map_err(|r| ConfigError::flag("--log-format", r))?;
        }
        Ok(())
    }
}

impl CheckpointSettings {
    fn apply(
        &mut self,
        section: CheckpointSection,
        at: &dyn Fn(Range<usize>, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let absolute = |v: &Spanned<String>, key: &str| -> Result<PathBuf, ConfigError> {
            if v.get_ref().starts_with('/') {
                Ok(PathBuf::from(v.get_ref()))
            } else {
                Err(at(v.span(), format!("{key} must be an absolute path")))
            }
        };
        if let Some(v) = section.mode {
            self.mode = match v.get_ref().as_str() {
                "auto" => CheckpointMode::Auto,
                "native" => CheckpointMode::Native,
                "emulate" => CheckpointMode::Emulate,
                other => {
                    return Err(at(
                        v.span(),
                        format!("checkpoint mode {other:?} must be auto, native or emulate"),
                    ))
                }
            };
        }
        if let Some(v) = section.allowed_dirs {
            self.allowed_dirs = absolute_dirs(&v, at)?;
        }
        if let Some(v) = section.work_dir {
            self.work_dir = absolute(&v, "work_dir")?;
        }
        if let Some(v) = section.failed_log_dir {
            self.failed_log_dir = absolute(&v, "failed_log_dir")?;
        }
        if let Some(v) = section.containerd_namespace {
            if !valid_namespace(v.get_ref()) {
                return Err(at(
                    v.span(),
                    format!(
                        "containerd_namespace {:?} is not a containerd namespace (letters and digits, single '.', '_' or '-' between them, at most 76 characters)",
                        v.get_ref()
                    ),
                ));
            }
            self.containerd_namespace = v.into_inner();
        }
        if let Some(v) = section.allowed_namespaces {
            self.allowed_namespaces = v;
        }
        if let Some(v) = section.denied_namespaces {
            self.denied_namespaces = v;
        }
        if let Some(v) = section.max_archive_bytes {
            self.max_archive_bytes = v;
        }
        if let Some(v) = section.audit_log {
            self.audit_log = if v.get_ref().is_empty() {
                None
            } else {
                Some(absolute(&v, "audit_log")?)
            };
        }
        if let Some(v) = section.allowed_criu_options {
            for o in v.get_ref() {
                if !CRIU_OPTIONS.contains(&o.as_str()) {
                    return Err(at(
                        v.span(),
                        format!("allowed_criu_options: {o:?} is not one of {CRIU_OPTIONS:?}"),
                    ));
                }
            }
            self.allowed_criu_options = v.into_inner();
        }
        Ok(())
    }
}

impl RestoreSettings {
    fn apply(
        &mut self,
        section: RestoreSection,
        at: &dyn Fn(Range<usize>, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Some(v) = section.mode {
            self.mode = match v.get_ref().as_str() {
                "auto" => RestoreMode::Auto,
                "native" => RestoreMode::Native,
                "wrapper" => RestoreMode::Wrapper,
                other => {
                    return Err(at(
                        v.span(),
                        format!("restore mode {other:?} must be auto, native or wrapper"),
                    ))
                }
            };
        }
        if let Some(v) = section.allowed_dirs {
            self.allowed_dirs = absolute_dirs(&v, at)?;
        }
        if let Some(v) = section.staging_dir {
            if !v.get_ref().starts_with('/') {
                return Err(at(v.span(), "staging_dir must be an absolute path".into()));
            }
            self.staging_dir = PathBuf::from(v.into_inner());
        }
        if let Some(v) = section.allow_cross_namespace {
            self.allow_cross_namespace = v;
        }
        if let Some(v) = section.operator_annotations {
            self.operator_annotations = v;
        }
        if let Some(v) = section.require_sidecar {
            self.require_sidecar = v;
        }
        if let Some(v) = section.watchdog_seconds {
            if !(1..=3600).contains(v.get_ref()) {
                return Err(at(
                    v.span(),
                    "watchdog_seconds must be between 1 and 3600".into(),
                ));
            }
            self.watchdog_seconds = v.into_inner();
        }
        for (value, slot, key) in [
            (
                section.max_member_bytes,
                &mut self.max_member_bytes,
                "max_member_bytes",
            ),
            (
                section.max_archive_bytes,
                &mut self.max_archive_bytes,
                "max_archive_bytes",
            ),
        ] {
            if let Some(v) = value {
                if *v.get_ref() == 0 {
                    return Err(at(v.span(), format!("{key} must be above 0")));
                }
                *slot = v.into_inner();
            }
        }
        if let Some(v) = section.wrapper_binary {
            if v.get_ref().is_empty() || v.get_ref().contains('/') {
                return Err(at(
                    v.span(),
                    "wrapper_binary is a file name (no directory), e.g. \"ckpt-shim-runc\"".into(),
                ));
            }
            self.wrapper_binary = v.into_inner();
        }
        Ok(())
    }
}

/// A list of absolute directories (`allowed_dirs`).
fn absolute_dirs(
    v: &Spanned<Vec<String>>,
    at: &dyn Fn(Range<usize>, String) -> ConfigError,
) -> Result<Vec<PathBuf>, ConfigError> {
    v.get_ref()
        .iter()
        .map(|d| {
            if d.starts_with('/') {
                Ok(PathBuf::from(d))
            } else {
                Err(at(
                    v.span(),
                    format!("allowed_dirs entry {d:?} is not absolute"),
                ))
            }
        })
        .collect()
}

/// Accepts `unix:///abs/path` (what kubelet and crictl write), `unix:/abs/path` and a bare
/// absolute path.
pub fn unix_path(endpoint: &str) -> Result<PathBuf, String> {
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        return Err(format!(
            "endpoint {endpoint:?}: only unix:// sockets are supported"
        ));
    } else {
        endpoint
    };
    if !path.starts_with('/') {
        return Err(format!(
            "endpoint {endpoint:?}: the socket path must be absolute"
        ));
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if path.len() > 107 {
        return Err(format!(
            "endpoint {endpoint:?}: socket path longer than 107 bytes"
        ));
    }
    Ok(PathBuf::from(path))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("socket_mode {s:?} is not an octal mode such as \"0660\""))?;
    if mode > 0o777 {
        return Err(format!("socket_mode {s:?} has bits beyond 0777"));
    }
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "socket_mode {s:?} must give the owner read and write"
        ));
    }
    Ok(mode)
}

fn resolve_group(s: &str) -> Result<u32, String> {
    if let Ok(gid) = s.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(format!("socket_group {s:?}: no such group")),
        Err(e) => Err(format!("socket_group {s:?}: cannot look it up: {e}")),
    }
}

fn check_level(s: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| ())
        .map_err(|e| {
            format!("log level {s:?} is not valid (trace|debug|info|warn|error or directives): {e}")
        })
}

fn parse_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "auto" => Ok(LogFormat::Auto),
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("log format {s:?} must be auto, text or json")),
    }
}

/// containerd's namespaces are sent as a header, so the rule also keeps them valid headers.
/// Whether containerd accepts `namespace` as a namespace name (its rule: runs of ASCII
/// letters and digits joined by single '.', '_' or '-', at most 76 characters), which also
/// makes it a valid header value.
pub fn valid_namespace(namespace: &str) -> bool {
    namespace.len() <= 76
        && namespace
            .split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.apply_file(Path::new("/etc/x.toml"), text)?;
        Ok(c)
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let text = include_str!("../../config/ckpt-shim.toml");
        assert_eq!(parse(text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let err = parse("[server]\nlisten = \"/a.sock\"\nlisen = 1\n").unwrap_err();
        assert_eq!(err.location, "/etc/x.toml:3");
        assert!(
            err.reason.contains("unknown field `lisen`"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn bad_values_name_the_line_and_reason() {
        let err = parse("[server]\n\nsocket_mode = \"0999\"\n").unwrap_err();
        assert_eq!(err.location, "/etc/x.toml:3");
        assert!(err.reason.contains("octal"));
        let err = parse("[runtime]\nendpoint = \"tcp://1.2.3.4:5\"\n").unwrap_err();
        assert_eq!(err.location, "/etc/x.toml:2");
        let err = parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(err.reason.contains("auto, text or json"));
        let err = parse("[server]\nmax_message_bytes = 10\n").unwrap_err();
        assert!(err.reason.contains("between 4096"));
        let err = parse("[server]\nallowed_uids = [-1]\n").unwrap_err();
        assert_eq!(err.location, "/etc/x.toml:2");
        let err = parse("[checkpoint]\ncontainerd_namespace = \"k8s io\"\n").unwrap_err();
        assert_eq!(err.location, "/etc/x.toml:2");
        assert!(err.reason.contains("not a containerd namespace"));
    }

    #[test]
    fn flags_override_the_file() {
        let mut c = parse("[server]\nlisten = \"unix:///a.sock\"\n").unwrap();
        c.apply_overrides(&Overrides {
            listen: Some("unix:///b.sock".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen, PathBuf::from("/b.sock"));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            unix_path("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(
            unix_path("/run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert!(unix_path("unix://relative").is_err());
        assert!(unix_path("http://x").is_err());
    }

    #[test]
    fn namespaces_containerd_accepts() {
        for ok in ["k8s.io", "default", "moby", "a-b_c.d", "x1"] {
            assert!(valid_namespace(ok), "{ok}");
        }
        for bad in [
            "",
            ".k8s",
            "k8s.",
            "a..b",
            "k8s io",
            "k8s/io",
            "ns\n",
            &"a".repeat(77),
        ] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
    }
}
