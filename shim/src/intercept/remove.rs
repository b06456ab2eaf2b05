//! RemoveContainer: a restored container's staged checkpoint goes with it.

use super::{Call, Decision};
use crate::api::cri::RemoveContainerRequest;
use crate::grpc::Code;
use crate::restore::Restorer;

pub async fn decide(
    call: &Call<'_>,
    restorer: &Restorer,
    request: RemoveContainerRequest,
) -> Decision {
    if !restorer.is_restore(&request.container_id) {
        return Decision::Forward;
    }
    let answer = match call.send(call.original).await {
        Ok(a) => a,
        Err(status) => return Decision::Answer(status),
    };
    if matches!(answer.status().0, Code::Ok | Code::NotFound) {
        restorer.removed(&request.container_id).await;
    }
    Decision::Relay(Box::new(answer))
}
