//! End-to-end: the real ckpt-shim in front of real containerd 1.6, 1.7 and 2.1 (the test
//! bed in tests/testbed), driven as kubelet drives a runtime.
//!
//! Needs root; skipped (with a line saying so) when not root or when CKPT_E2E=0. Each test
//! brings its containerd instance (`<version>-e2e`) up and down again, also when it fails.

mod killed;
mod lifecycle;
mod normalize;

use std::time::Duration;

use ckpt_shim_tests::kubelet::Kubelet;
use ckpt_shim_tests::raw::{channel, lazy_channel};
use ckpt_shim_tests::shim::{Options, Shim};
use ckpt_shim_tests::testbed::{self, Instance};
use tokio::sync::{Mutex, MutexGuard};

/// Tests of one version share its instance: one at a time.
static V16: Mutex<()> = Mutex::const_new(());
static V17: Mutex<()> = Mutex::const_new(());
static V21: Mutex<()> = Mutex::const_new(());

/// One node: a containerd instance of the test bed and the shim in front of it.
///
/// Fields drop in order: the shim stops before the instance goes down.
pub struct Node {
    pub shim: Option<Shim>,
    shim_dir: Option<tempfile::TempDir>,
    pub instance: Option<Instance>,
    _lock: MutexGuard<'static, ()>,
}

impl Node {
    /// Brings up `<version>-e2e` and starts the shim in front of it, or returns None (after
    /// printing why) when the test must be skipped.
    pub async fn start(version: &str, test: &str) -> Option<Node> {
        if testbed::skip(test) {
            return None;
        }
        let lock = match version {
            "1.6" => &V16,
            "1.7" => &V17,
            "2.1" => &V21,
            other => panic!("no test bed version {other}"),
        }
        .lock()
        .await;
        let name = format!("{version}-e2e");
        let instance = tokio::task::spawn_blocking(move || Instance::up(&name))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e:#}"));
        let shim_dir = tempfile::Builder::new()
            .prefix("shim-")
            .tempdir_in(instance.dir())
            .unwrap();
        let options = Options {
            log_level: Some("info,ckpt_shim::call=debug".into()),
            ..Options::default()
        };
        let shim = Shim::start(shim_dir.path(), &instance.socket, options).await;
        Some(Node {
            shim: Some(shim),
            shim_dir: Some(shim_dir),
            instance: Some(instance),
            _lock: lock,
        })
    }

    pub fn instance(&self) -> &Instance {
        self.instance.as_ref().unwrap()
    }

    pub fn shim(&self) -> &Shim {
        self.shim.as_ref().unwrap()
    }

    /// A kubelet talking to containerd directly.
    pub async fn direct(&self) -> Kubelet {
        Kubelet::new(channel(&self.instance().socket).await.unwrap())
    }

    /// A kubelet talking through the shim; dials lazily, so it survives the runtime going
    /// away.
    pub fn via_shim(&self) -> Kubelet {
        Kubelet::new(lazy_channel(&self.shim().socket))
    }

    /// Stops the shim (it must exit cleanly on SIGTERM), brings the instance down, and
    /// checks that nothing is left mounted or running.
    pub async fn finish(mut self) {
        let shim = self.shim.take().unwrap();
        let logs = shim.logs();
        let status = shim.stop().await;
        assert!(status.success(), "shim exited {status}:\n{logs}");
        drop(self.shim_dir.take());
        let instance = self.instance.take().unwrap();
        tokio::task::spawn_blocking(move || instance.down())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}

/// Polls `f` until it succeeds or `timeout` passes; returns the last result.
pub async fn retry<T, F, Fut>(timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
