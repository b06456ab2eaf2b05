//! The composition root: every part of the proxy built once from the configuration, each
//! handed only what it needs, and their background work started.
//!
//! ```text
//! Runtime (every connection to the runtime)
//!   ├─ relay upstream ──▶ Relay ─────────────┐
//!   ├─ own upstream, CRI, containerd ──▶ Checkpointer ─┐
//!   └─ CRI, containerd ──▶ Restorer ───────────────────┴─▶ Handlers ─▶ Router
//! AuditLog ──▶ Checkpointer, Restorer (one chain)
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::checkpoint::Checkpointer;
use crate::config::Config;
use crate::intercept::Handlers;
use crate::relay::Relay;
use crate::restore::Restorer;
use crate::router::Router;
use crate::runtime::Runtime;

/// How often staged checkpoints of containers that disappeared are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

pub struct App {
    runtime: Arc<Runtime>,
    checkpointer: Arc<Checkpointer>,
    restorer: Arc<Restorer>,
    router: Arc<Router>,
}

impl App {
    /// Builds the parts and removes what dead runs left behind. Dials nothing.
    pub fn build(config: &Config) -> anyhow::Result<App> {
        let runtime = Arc::new(Runtime::new(
            &config.runtime_endpoint,
            config.connect_timeout,
            &config.checkpoint.containerd_namespace,
        )?);
        let audit = config
            .checkpoint
            .audit_log
            .clone()
            .map(|path| Arc::new(AuditLog::new(path)));
        let checkpointer = Arc::new(Checkpointer::new(
            config.checkpoint.clone(),
            &runtime,
            audit.clone(),
        ));
        checkpointer.remove_leftovers();
        let restorer = Arc::new(Restorer::new(
            config.restore.clone(),
            config.checkpoint.failed_log_dir.clone(),
            &runtime,
            audit,
        ));
        restorer.recover();
        let router = Arc::new(Router::new(
            Relay::new(runtime.relay().clone(), config.max_message_bytes),
            Handlers {
                checkpointer: checkpointer.clone(),
                restorer: restorer.clone(),
            },
        ));
        Ok(App {
            runtime,
            checkpointer,
            restorer,
            router,
        })
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Starts the background work on the current tokio runtime: what the runtime can do
    /// (its checkpoint, its set-up for restores) is looked at now and after every reconnect
    /// (it may have been restarted, upgraded or reconfigured), and staged checkpoints of
    /// vanished containers are swept.
    pub fn start(&self) {
        let sweeper = self.restorer.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                sweeper.sweep().await;
            }
        });
        let (checkpointer, restorer) = (self.checkpointer.clone(), self.restorer.clone());
        let connected = self.runtime.relay().on_connect();
        tokio::spawn(async move {
            checkpointer.clone().recover_inflight();
            loop {
                checkpointer.detect_now().await;
                restorer.check_runtime().await;
                connected.notified().await;
            }
        });
    }
}
