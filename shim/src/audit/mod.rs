//! The audit log: one JSON line per checkpoint attempt (allowed or not, failed or not),
//! appended and fsynced, each line carrying the SHA-256 of the one before it, so removing,
//! reordering or editing a line breaks the chain at that line.
//!
//! A line's `hash` is SHA-256 over the line's other fields serialised with sorted keys
//! (serde_json's map order), its `prev` the `hash` of the line before ("" for the first).

pub mod show;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What was attempted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Action {
    #[default]
    Checkpoint,
    Restore,
}

impl Action {
    /// The name in the log (part of the hashed text: never change it).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Checkpoint => "checkpoint",
            Action::Restore => "restore",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Refused by policy (PERMISSION_DENIED).
    Denied,
}

impl Outcome {
    /// The name in the log (part of the hashed text: never change it).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Denied => "denied",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to one attempt.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub time: String,
    pub action: Action,
    pub caller_pid: i32,
    pub caller_uid: u32,
    pub container_id: String,
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub location: String,
    /// None until the attempt is concluded (written as "").
    pub result: Option<Outcome>,
    pub code: String,
    pub message: String,
    pub engine: String,
    pub sha256: String,
    pub size: u64,
    pub duration_ms: u64,
}

impl Record {
    /// Fills result and code (and the message of a failure) from how the attempt ended.
    pub fn conclude(&mut self, result: Result<(), &crate::grpc::Status>) {
        match result {
            Ok(()) => {
                self.result = Some(Outcome::Succeeded);
                self.code = "OK".into();
            }
            Err(status) => {
                self.result = Some(if status.code == crate::grpc::Code::PermissionDenied {
                    Outcome::Denied
                } else {
                    Outcome::Failed
                });
                self.code = format!("{:?}", status.code);
                self.message = status.message.clone();
            }
        }
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut s = |k: &str, v: &str| {
            m.insert(k.into(), Value::String(v.into()));
        };
        s("time", &self.time);
        s("action", self.action.as_str());
        s("container_id", &self.container_id);
        s("container", &self.container);
        s("pod", &self.pod);
        s("namespace", &self.namespace);
        s("location", &self.location);
        s("result", self.result.map_or("", Outcome::as_str));
        s("code", &self.code);
        s("message", &self.message);
        s("engine", &self.engine);
        s("sha256", &self.sha256);
        m.insert("caller_pid".into(), self.caller_pid.into());
        m.insert("caller_uid".into(), self.caller_uid.into());
        m.insert("size".into(), self.size.into());
        m.insert("duration_ms".into(), self.duration_ms.into());
        m
    }
}

/// The open log: appends are serialised and each is fsynced before the call is answered.
pub struct AuditLog {
    path: PathBuf,
    /// The open file, the last hash and sequence number: appends are written and fsynced
    /// on a blocking thread, one at a time.
    state: Arc<Mutex<Option<(File, String, u64)>>>,
}

fn hash_of(map: &Map<String, Value>) -> String {
    let text = serde_json::to_string(map).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl AuditLog {
    pub fn new(path: PathBuf) -> Self {
        AuditLog {
            path,
            state: Arc::default(),
        }
    }

    fn open(path: &Path) -> std::io::Result<(File, String, u64)> {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        // The chain continues from the last line already there.
        let (mut prev, mut seq) = (String::new(), 0u64);
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&line) {
                    prev = m.get("hash").and_then(Value::as_str).unwrap_or("").into();
                    seq = m.get("seq").and_then(Value::as_u64).unwrap_or(seq);
                }
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        Ok((file, prev, seq))
    }

    /// Appends `record`; returns once it is on disk. The write and its fsync run on a
    /// blocking thread, never on the threads that relay calls.
    pub async fn append(&self, record: &Record) -> std::io::Result<()> {
        let (path, state, map) = (self.path.clone(), self.state.clone(), record.to_map());
        tokio::task::spawn_blocking(move || Self::append_now(&path, &state, map))
            .await
            .map_err(std::io::Error::other)?
    }

    fn append_now(
        path: &Path,
        state: &Mutex<Option<(File, String, u64)>>,
        mut map: Map<String, Value>,
    ) -> std::io::Result<()> {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let (file, prev, seq) = match &mut *state {
            Some(open) => open,
            slot @ None => slot.insert(Self::open(path)?),
        };
        map.insert("seq".into(), (*seq + 1).into());
        map.insert("prev".into(), Value::String(prev.clone()));
        let hash = hash_of(&map);
        map.insert("hash".into(), Value::String(hash.clone()));
        let mut line = serde_json::to_string(&map).map_err(std::io::Error::other)?;
        line.push('\n');
        let result = file
            .write_all(line.as_bytes())
            .and_then(|_| file.sync_data());
        if result.is_err() {
            // Reopen next time: the file may have been replaced or the disk freed.
            *state = None;
            return result;
        }
        *prev = hash;
        *seq += 1;
        Ok(())
    }
}

/// Why a chain does not verify.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken {
    /// 1-based line number of the first record that is wrong.
    pub line: usize,
    pub reason: String,
}

/// Checks every line's hash and link; returns the number of records.
pub fn verify(reader: impl BufRead) -> Result<usize, Broken> {
    let mut prev = String::new();
    let mut count = 0;
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let broken = |reason: String| Broken { line: n, reason };
        let line = line.map_err(|e| broken(format!("unreadable: {e}")))?;
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(&line) else {
            return Err(broken("not a JSON object".into()));
        };
        let Some(Value::String(hash)) = map.remove("hash") else {
            return Err(broken("has no hash".into()));
        };
        let linked = map.get("prev").and_then(Value::as_str).unwrap_or("");
        if linked != prev {
            return Err(broken(format!(
                "prev is {linked:?} but the record before has hash {prev:?} (a record was removed, reordered or changed)"
            )));
        }
        if hash_of(&map) != hash {
            return Err(broken(
                "its content does not match its hash (edited)".into(),
            ));
        }
        prev = hash;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chain_verifies_and_names_the_first_broken_line() {
        let dir = std::env::temp_dir().join(format!("ckpt-audit-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::new(path.clone());
        for i in 0..3 {
            let r = Record {
                pod: format!("p{i}"),
                result: Some(Outcome::Succeeded),
                ..Default::default()
            };
            log.append(&r).await.unwrap();
        }
        // A second writer (shim restart) continues the chain.
        AuditLog::new(path.clone())
            .append(&Record::default())
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify(text.as_bytes()), Ok(4));
        let edited = text.replacen("\"p1\"", "\"px\"", 1);
        assert_eq!(verify(edited.as_bytes()).unwrap_err().line, 2);
        let lines: Vec<&str> = text.lines().collect();
        let removed = format!("{}\n{}\n", lines[0], lines[2]);
        assert_eq!(verify(removed.as_bytes()).unwrap_err().line, 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A log written by the code before the audit's types were enums (issue 10) still
    /// verifies, and the same attempts recorded now give the very same bytes: the hashed
    /// text did not change.
    #[tokio::test]
    async fn a_log_written_before_the_enums_verifies_and_is_reproduced_byte_for_byte() {
        let before = include_str!("testdata/written-before-issue-10.jsonl");
        assert_eq!(verify(before.as_bytes()), Ok(3));

        let dir = std::env::temp_dir().join(format!("ckpt-audit-compat-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::new(dir.join("audit.jsonl"));
        let mut checkpoint = Record {
            time: "2026-11-26T05:00:00.000000000Z".into(),
            action: Action::Checkpoint,
            caller_pid: 4242,
            caller_uid: 0,
            container_id: "0123456789ab".into(),
            container: "counter".into(),
            pod: "demo".into(),
            namespace: "default".into(),
            location: "/var/lib/kubelet/checkpoints/checkpoint-demo_default-counter-2026-11-26T05:00:00Z.tar".into(),
            engine: "emulated".into(),
            sha256: "a".repeat(64),
            size: 1 << 20,
            duration_ms: 431,
            ..Default::default()
        };
        checkpoint.conclude(Ok(()));
        log.append(&checkpoint).await.unwrap();
        let mut denied = Record {
            time: "2026-11-26T05:01:00.000000000Z".into(),
            action: Action::Restore,
            caller_pid: 4243,
            container: "counter".into(),
            pod: "demo2".into(),
            namespace: "other".into(),
            location: "/var/lib/kubelet/checkpoints/x.tar".into(),
            ..Default::default()
        };
        denied.conclude(Err(&crate::grpc::Status::new(
            crate::grpc::Code::PermissionDenied,
            "the checkpoint is of a container in namespace \"default\"; restoring it into namespace \"other\" is not allowed (restore.allow_cross_namespace)",
        )));
        log.append(&denied).await.unwrap();
        let mut failed = Record {
            time: "2026-11-26T05:02:00.000000000Z".into(),
            action: Action::Restore,
            caller_pid: 4244,
            container_id: "fedcba987654".into(),
            container: "counter".into(),
            pod: "demo3".into(),
            namespace: "default".into(),
            location: "localhost/ckpt/counter:checkpoint@sha256:00".into(),
            engine: "wrapper".into(),
            sha256: "b".repeat(64),
            size: 2048,
            duration_ms: 12,
            ..Default::default()
        };
        failed.conclude(Err(&crate::grpc::Status::new(
            crate::grpc::Code::FailedPrecondition,
            "ünïcode and \"quotes\"",
        )));
        log.append(&failed).await.unwrap();
        let now = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
        assert_eq!(now, before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
