//! Which checkpoints the node's configuration allows: pod namespaces, CRIU options.

use super::error::Error;
use crate::api::containerd::runc::v1::CheckpointOptions;
use crate::config::CheckpointSettings;

/// Pod or container annotation naming extra CRIU options, comma-separated.
pub const CRIU_OPTIONS_ANNOTATION: &str = "ckpt-shim.io/criu-options";

pub fn namespace(settings: &CheckpointSettings, namespace: &str) -> Result<(), Error> {
    if settings.denied_namespaces.iter().any(|n| n == namespace) {
        return Err(Error::NamespaceDenied(namespace.to_owned()));
    }
    if !settings.allowed_namespaces.is_empty()
        && !settings.allowed_namespaces.iter().any(|n| n == namespace)
    {
        return Err(Error::NamespaceNotAllowed(namespace.to_owned()));
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
) -> Result<Vec<String>, Error> {
    let Some(value) = annotation else {
        return Ok(Vec::new());
    };
    let mut applied = Vec::new();
    for option in value.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if !settings.allowed_criu_options.iter().any(|a| a == option) {
            return Err(Error::OptionNotAllowed {
                option: option.to_owned(),
                allowed: settings.allowed_criu_options.clone(),
            });
        }
        match option {
            "tcp-established" => options.open_tcp = true,
            "file-locks" => options.file_locks = true,
            "external-unix-sockets" => options.external_unix_sockets = true,
            "shell-job" => options.terminal = true,
            _ => return Err(Error::UnknownOption(option.to_owned())),
        }
        applied.push(option.to_owned());
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::Coded;
    use crate::grpc::Code;

    #[test]
    fn namespaces_and_options() {
        let mut s = CheckpointSettings {
            denied_namespaces: vec!["kube-system".into()],
            ..Default::default()
        };
        assert_eq!(
            namespace(&s, "kube-system").unwrap_err().code(),
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
