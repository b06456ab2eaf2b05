//! CheckpointContainer (kubelet's `POST /checkpoint/{ns}/{pod}/{container}`).
//! For now the request is inspected and relayed as it came; the checkpoint engine builds on
//! this entry point.

use super::{Call, Decision};
use crate::api::cri::CheckpointContainerRequest;

pub async fn decide(call: &Call<'_>, request: CheckpointContainerRequest) -> Decision {
    tracing::debug!(
        container = %request.container_id,
        location = %request.location,
        timeout_s = request.timeout,
        uid = call.caller.uid,
        "CheckpointContainer"
    );
    Decision::Forward
}
