//! RemoveContainer: where a restored container's staged checkpoint is cleaned up.
//! For now the request is inspected and relayed as it came.

use super::{Call, Decision};
use crate::api::cri::RemoveContainerRequest;

pub async fn decide(call: &Call<'_>, request: RemoveContainerRequest) -> Decision {
    tracing::debug!(container = %request.container_id, uid = call.caller.uid, "RemoveContainer");
    Decision::Forward
}
