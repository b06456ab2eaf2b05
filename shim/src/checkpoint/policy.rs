//! Which checkpoints the node's configuration allows: pod namespaces, CRIU options.

use crate::api::containerd::runc::v1::CheckpointOptions;
use crate::config::CheckpointSettings;
use crate::grpc::Status;

/// Pod or container annotation naming extra CRIU options, comma-separated.
pub const CRIU_OPTIONS_ANNOTATION: &str = "ckpt-shim.io/criu-options";

pub fn namespace(settings: &CheckpointSettings, namespace: &str) -> Result<(), Status> {
    if settings.denied_namespaces.iter().any(|n| n == namespace) {
        return Err(Status::permission_denied(format!(
            "checkpoints of pods in namespace {namespace:?} are denied by the node's configuration"
        )));
    }
    if !settings.allowed_namespaces.is_empty()
        && !settings.allowed_namespaces.iter().any(|n| n == namespace)
    {
        return Err(Status::permission_denied(format!(
            "namespace {namespace:?} is not among the namespaces allowed to be checkpointed"
        )));
    }
    Ok(())
}

/// The CRIU options asked for by annotation, each checked against the allow list, applied
/// to runc's checkpoint options. A refused option fails the request: silently dropping it
/// would make a checkpoint that cannot be restored (an established TCP connection).
pub fn criu_options(
    settings: &CheckpointSettings,
    annotation: Option<&str>,
    options: &mut CheckpointOptions,
) -> Result<Vec<String>, Status> {
    let Some(value) = annotation else {
        return Ok(Vec::new());
    };
    let mut applied = Vec::new();
    for option in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if !settings.allowed_criu_options.iter().any(|a| a == option) {
            return Err(Status::permission_denied(format!(
                "annotation {CRIU_OPTIONS_ANNOTATION} asks for CRIU option {option:?}, which the node's configuration does not allow (allowed: {:?})",
                settings.allowed_criu_options
            )));
        }
        match option {
            "tcp-established" => options.open_tcp = true,
            "file-locks" => options.file_locks = true,
            "external-unix-sockets" => options.external_unix_sockets = true,
            "shell-job" => options.terminal = true,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "unknown CRIU option {option:?} in {CRIU_OPTIONS_ANNOTATION}"
                )))
            }
        }
        applied.push(option.to_owned());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::Code;

    #[test]
    fn namespaces_and_options() {
        let mut s = CheckpointSettings {
            denied_namespaces: vec!["kube-system".into()],
            ..Default::default()
        };
        assert_eq!(
            namespace(&s, "kube-system").unwrap_err().code,
            Code::PermissionDenied
        );
        assert!(namespace(&s, "default").is_ok());
        s.allowed_namespaces = vec!["prod".into()];
        assert!(namespace(&s, "default").is_err());
        assert!(namespace(&s, "prod").is_ok());

        let mut o = CheckpointOptions::default();
        assert!(criu_options(&s, Some("tcp-established"), &mut o).is_err());
        s.allowed_criu_options = vec!["tcp-established".into(), "file-locks".into()];
        let applied = criu_options(&s, Some("tcp-established, file-locks"), &mut o).unwrap();
        assert_eq!(applied.len(), 2);
        assert!(o.open_tcp && o.file_locks);
    }
}
