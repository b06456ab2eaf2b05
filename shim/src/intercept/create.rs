//! CreateContainer: where a restore is recognised (a container whose image is a
//! checkpoint). Anything else goes on as its original bytes. A restore is checked and
//! staged by `restore`, sent on as the original bytes with the fields the restore changes
//! merged over them, and confirmed against the runtime's answer.

use prost::Message;

use super::{Call, Decision};
use crate::api::cri::{CreateContainerRequest, CreateContainerResponse};
use crate::grpc::{patch, Code, Status};
use crate::restore::Restorer;

pub async fn decide(
    call: &Call<'_>,
    restorer: &Restorer,
    request: CreateContainerRequest,
) -> Decision {
    let source = match restorer.detect(&request).await {
        Ok(None) => return Decision::Forward,
        Ok(Some(source)) => source,
        Err(e) => return Decision::Answer(e.into()),
    };
    tracing::info!(sandbox = %request.pod_sandbox_id, ?source, uid = call.caller.uid, "CreateContainer of a checkpoint: restore");
    let prepared = match restorer.prepare(&request, source, call.caller).await {
        Ok(p) => p,
        Err(e) => return Decision::Answer(e.into()),
    };
    let payload = patch::merged(call.original, &prepared.changes);
    let answer = match call.send(&payload).await {
        Ok(a) => a,
        Err(status) => {
            restorer.create_failed(prepared, &status).await;
            return Decision::Answer(status);
        }
    };
    let (code, message) = answer.status();
    if code != Code::Ok {
        restorer
            .create_failed(prepared, &Status::new(code, message))
            .await;
        return Decision::Relay(Box::new(answer));
    }
    let id = answer
        .message()
        .and_then(|m| CreateContainerResponse::decode(m).ok())
        .map(|r| r.container_id)
        .unwrap_or_default();
    match restorer.created(prepared, &id).await {
        Ok(()) => Decision::Relay(Box::new(answer)),
        Err(e) => Decision::Answer(e.into()),
    }
}
