//! Changing fields of a request the shim forwards without re-encoding it.
//!
//! Protobuf parsers merge a message that occurs twice: a scalar field takes its last value,
//! an embedded message is merged field by field, a map gains (or replaces) its keys. So the
//! shim appends the encoding of a message holding only the fields it changes to the
//! original bytes: every field it does not touch, including fields newer than its schema,
//! reaches the runtime exactly as the caller sent it.

use prost::Message;

/// `original` with the set fields of `changes` merged over it.
pub fn merged<M: Message>(original: &[u8], changes: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(original.len() + changes.encoded_len());
    out.extend_from_slice(original);
    // Encoding into a Vec cannot run out of room.
    let _ = changes.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::cri::{
        CheckpointContainerRequest, ContainerConfig, CreateContainerRequest, ImageSpec,
    };

    #[test]
    fn a_changed_scalar_wins_and_unknown_fields_stay() {
        let req = CheckpointContainerRequest {
            container_id: "abc".into(),
            location: "/var/lib/kubelet/checkpoints/x.tar".into(),
            timeout: 30,
        };
        let mut bytes = req.encode_to_vec();
        bytes.extend_from_slice(&[0xc2, 0x3e, 3, b'f', b'u', b't']); // field 1000
        let out = merged(
            &bytes,
            &CheckpointContainerRequest {
                location: "/tmp/.x.tar.tmp".into(),
                ..Default::default()
            },
        );
        assert!(out.starts_with(&bytes));
        let back = CheckpointContainerRequest::decode(&out[..]).unwrap();
        assert_eq!(back.container_id, "abc");
        assert_eq!(back.location, "/tmp/.x.tar.tmp");
        assert_eq!(back.timeout, 30);
    }

    #[test]
    fn embedded_messages_and_maps_are_merged() {
        let req = CreateContainerRequest {
            pod_sandbox_id: "pod".into(),
            config: Some(ContainerConfig {
                image: Some(ImageSpec {
                    image: "/archive.tar".into(),
                    ..Default::default()
                }),
                annotations: [("a".to_owned(), "1".to_owned())].into(),
                command: vec!["sh".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = merged(
            &req.encode_to_vec(),
            &CreateContainerRequest {
                config: Some(ContainerConfig {
                    image: Some(ImageSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                    annotations: [("b".to_owned(), "2".to_owned())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        let back = CreateContainerRequest::decode(&out[..]).unwrap();
        let config = back.config.unwrap();
        assert_eq!(back.pod_sandbox_id, "pod");
        assert_eq!(config.image.unwrap().image, "busybox");
        assert_eq!(config.command, ["sh"]);
        assert_eq!(config.annotations.len(), 2);
    }
}
