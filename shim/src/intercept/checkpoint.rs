//! CheckpointContainer (kubelet's `POST /checkpoint/{ns}/{pod}/{container}`): handed to
//! the shim's checkpointer, which runs it in a task of its own so that a caller hanging up
//! cannot leave a half-done checkpoint behind (the checkpointer's own timeout still applies).

use std::sync::Arc;

use super::{Call, Decision};
use crate::api::cri::CheckpointContainerRequest;
use crate::checkpoint::{Checkpointer, Job};
use crate::grpc::Status;
use crate::runtime::unary::Head;

pub async fn decide(
    call: &Call<'_>,
    checkpointer: &Arc<Checkpointer>,
    request: CheckpointContainerRequest,
) -> Decision {
    tracing::debug!(
        container = %request.container_id,
        location = %request.location,
        timeout_s = request.timeout,
        uid = call.caller.uid,
        "CheckpointContainer"
    );
    let job = Job {
        request,
        original: call.original.to_vec(),
        head: Head::of(call.head()),
        caller: *call.caller,
    };
    match tokio::spawn(checkpointer.clone().run(job)).await {
        Ok(Ok(response)) => Decision::Reply(response.into()),
        Ok(Err(e)) => Decision::Answer(e.into()),
        Err(e) => Decision::Answer(Status::internal(format!("the checkpoint task failed: {e}"))),
    }
}
