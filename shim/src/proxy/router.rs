//! Which calls the shim owns. Everything not named here is relayed byte for byte, including
//! methods and services CRI adds after this build.

use crate::owned::OwnedRpc;

pub const RUNTIME_SERVICE: &str = "/runtime.v1.RuntimeService/";

pub enum Route {
    Relay,
    Owned(OwnedRpc),
}

pub fn route(path: &str) -> Route {
    let Some(method) = path.strip_prefix(RUNTIME_SERVICE) else {
        return Route::Relay;
    };
    match method {
        "CheckpointContainer" => Route::Owned(OwnedRpc::CheckpointContainer),
        "CreateContainer" => Route::Owned(OwnedRpc::CreateContainer),
        "StartContainer" => Route::Owned(OwnedRpc::StartContainer),
        "RemoveContainer" => Route::Owned(OwnedRpc::RemoveContainer),
        _ => Route::Relay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_methods_and_the_rest() {
        assert!(matches!(
            route("/runtime.v1.RuntimeService/CreateContainer"),
            Route::Owned(OwnedRpc::CreateContainer)
        ));
        assert!(matches!(
            route("/runtime.v1.RuntimeService/Version"),
            Route::Relay
        ));
        assert!(matches!(
            route("/runtime.v1.RuntimeService/CheckpointPod"),
            Route::Relay
        ));
        assert!(matches!(
            route("/runtime.v1.ImageService/PullImage"),
            Route::Relay
        ));
        // v1alpha2 and look-alikes are not ours.
        assert!(matches!(
            route("/runtime.v1alpha2.RuntimeService/CreateContainer"),
            Route::Relay
        ));
        assert!(matches!(
            route("/runtime.v1.RuntimeService/CreateContainerX"),
            Route::Relay
        ));
    }
}
