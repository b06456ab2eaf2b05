//! CreateContainer: where a restore is recognised (a container whose image is a
//! checkpoint). Anything else goes on as its original bytes. A restore is checked and
//! staged by `restore`, sent on as the original bytes plus the fields the restore changes,
//! and confirmed against the runtime's answer.

use prost::Message;

use super::{Call, Decision};
use crate::api::cri::{CreateContainerRequest, CreateContainerResponse};
use crate::grpc::{Code, Status};

pub async fn decide(call: &Call<'_>, request: CreateContainerRequest) -> Decision {
    let restorer = call.proxy.restorer();
    let source = match restorer.detect(&request).await {
        Ok(None) => return Decision::Forward,
        Ok(Some(source)) => source,
        Err(status) => return Decision::Answer(status),
    };
    tracing::info!(sandbox = %request.pod_sandbox_id, ?source, uid = call.caller.uid, "CreateContainer of a checkpoint: restore");
    let prepared = match restorer.prepare(&request, source, call.caller).await {
        Ok(p) => p,
        Err(status) => return Decision::Answer(status),
    };
    let mut payload = call.original.to_vec();
    payload.extend_from_slice(&prepared.patch);
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
        Err(status) => Decision::Answer(status),
    }
}
