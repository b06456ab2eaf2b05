//! The new container's pod as the runtime records it: its identity (name, namespace) and
//! annotations come from the runtime's PodSandboxStatus, never from the caller's request.

use std::collections::HashMap;

use super::error::Error;
use crate::api::cri::PodSandboxStatusRequest;
use crate::runtime::CallFailed;
use crate::runtime::CriClient;

pub struct SandboxView {
    pub name: String,
    pub namespace: String,
    pub annotations: HashMap<String, String>,
    /// The runtime handler the pod runs with ("" for the default).
    pub handler: String,
}

pub async fn view(cri: &CriClient, id: &str) -> Result<SandboxView, Error> {
    let answer = cri
        .clone()
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        })
        .await
        .map_err(|e| CallFailed::new(e, "PodSandboxStatus of the new container's pod"))?
        .into_inner();
    let status = answer
        .status
        .ok_or_else(|| Error::NoSandbox(id.to_owned()))?;
    let meta = status.metadata.unwrap_or_default();
    let handler = answer
        .info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| v["runtimeHandler"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(SandboxView {
        name: meta.name,
        namespace: meta.namespace,
        annotations: status.annotations,
        handler,
    })
}
