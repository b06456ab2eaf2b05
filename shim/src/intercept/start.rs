//! StartContainer: where a restored container's process state comes back (the runc
//! wrapper restores it while containerd creates the task). The shim confirms the restore
//! really happened and audits it; other containers' starts go on untouched.

use std::time::Instant;

use super::{Call, Decision};
use crate::api::cri::StartContainerRequest;
use crate::grpc::Code;
use crate::restore::Restorer;

pub async fn decide(
    call: &Call<'_>,
    restorer: &Restorer,
    request: StartContainerRequest,
) -> Decision {
    let id = request.container_id;
    if !restorer.is_restore(&id) {
        return Decision::Forward;
    }
    let started = Instant::now();
    let answer = match call.send(call.original).await {
        Ok(a) => a,
        Err(status) => {
            let status = match restorer.started(&id, Err(status), started).await {
                Err(e) => e.into(),
                Ok(()) => crate::grpc::Status::internal("StartContainer failed"),
            };
            return Decision::Answer(status);
        }
    };
    let (code, message) = answer.status();
    let result = if code == Code::Ok {
        Ok(())
    } else {
        Err(crate::grpc::Status::new(code, message))
    };
    match restorer.started(&id, result, started).await {
        Ok(()) => Decision::Relay(Box::new(answer)),
        Err(e) => Decision::Answer(e.into()),
    }
}
