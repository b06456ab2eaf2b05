//! StartContainer: where a restored container's process state comes back.
//! For now the request is inspected and relayed as it came.

use super::{Call, Decision};
use crate::api::cri::StartContainerRequest;

pub async fn decide(call: &Call<'_>, request: StartContainerRequest) -> Decision {
    tracing::debug!(container = %request.container_id, uid = call.caller.uid, "StartContainer");
    Decision::Forward
}
