//! CreateContainer: where a restore is recognised (a container whose image is a checkpoint).
//! For now the request is inspected and relayed as it came.

use super::{Call, Decision};
use crate::api::cri::CreateContainerRequest;

pub async fn decide(call: &Call<'_>, request: CreateContainerRequest) -> Decision {
    let name = request
        .config
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| m.name.as_str());
    let image = request
        .config
        .as_ref()
        .and_then(|c| c.image.as_ref())
        .map(|i| i.image.as_str());
    tracing::debug!(
        sandbox = %request.pod_sandbox_id,
        container = name.unwrap_or(""),
        image = image.unwrap_or(""),
        uid = call.caller.uid,
        "CreateContainer"
    );
    Decision::Forward
}
