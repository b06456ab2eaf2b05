//! The runtime's record of a pod sandbox: where a pod's identity (name, namespace, uid)
//! comes from for checkpoints and restores alike, never from labels or annotations the
//! creator of a container chose.

use std::collections::HashMap;

use super::{CallFailed, CriClient};
use crate::api::cri::{ContainerFilter, ListContainersRequest, PodSandboxStatusRequest};

pub struct PodRecord {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub annotations: HashMap<String, String>,
    /// The runtime handler the pod runs with ("" for the default).
    pub handler: String,
}

/// The pod `sandbox_id` as the runtime records it; None when it reports no status.
pub async fn record(cri: &CriClient, sandbox_id: &str) -> Result<Option<PodRecord>, CallFailed> {
    let answer = cri
        .clone()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            verbose: true,
        })
        .await
        .map_err(|e| CallFailed::new(e, "PodSandboxStatus"))?
        .into_inner();
    let Some(status) = answer.status else {
        return Ok(None);
    };
    let meta = status.metadata.unwrap_or_default();
    let handler = answer
        .info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| v["runtimeHandler"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Some(PodRecord {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        annotations: status.annotations,
        handler,
    }))
}

/// The sandbox a container runs in, as the runtime lists it.
pub async fn sandbox_of(cri: &CriClient, container_id: &str) -> Result<Option<String>, CallFailed> {
    let listed = cri
        .clone()
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                id: container_id.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .map_err(|e| CallFailed::new(e, "ListContainers"))?
        .into_inner();
    Ok(listed
        .containers
        .into_iter()
        .find(|c| c.id == container_id)
        .map(|c| c.pod_sandbox_id)
        .filter(|id| !id.is_empty()))
}
