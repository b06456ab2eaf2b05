//! CheckpointContainer (kubelet's `POST /checkpoint/{ns}/{pod}/{container}`): handed to
//! the shim's checkpointer, which runs it in a task of its own so that a caller hanging up
//! cannot leave a half-done checkpoint behind (the checkpointer's own timeout still applies).

use super::{Call, Decision};
use crate::api::cri::CheckpointContainerRequest;
use crate::checkpoint::Job;
use crate::grpc::Status;
use crate::proxy::unary::Head;

pub async fn decide(call: &Call<'_>, request: CheckpointContainerRequest) -> Decision {
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
    let checkpointer = call.proxy.checkpointer().clone();
    match tokio::spawn(checkpointer.run(job)).await {
        Ok(Ok(response)) => Decision::Reply(response.into()),
        Ok(Err(status)) => Decision::Answer(status),
        Err(e) => Decision::Answer(Status::internal(format!("the checkpoint task failed: {e}"))),
    }
}
