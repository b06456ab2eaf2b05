//! `config.dump`: the engine's description of the checkpointed container, with
//! checkpointctl's field names. The shim writes it for its own archives; the restore, the
//! inspection commands and the image builder read it from archives of every engine.

use serde::{Deserialize, Serialize};

/// The zero time as Go prints it: the restore fields of a checkpoint never restored.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `config.dump`. Fields are in the order serde_json's sorted maps wrote them before this
/// type existed, so the shim's archives stay byte-identical; keys other engines add are
/// ignored on read, missing ones read as empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigDump {
    /// RFC 3339.
    #[serde(deserialize_with = "crate::lenient::or_default")]
    pub checkpointed_time: String,
    /// RFC 3339.
    #[serde(deserialize_with = "crate::lenient::or_default")]
    pub created_time: String,
    pub id: String,
    /// `<pod>_<namespace>_<container>` style full name.
    pub name: String,
    #[serde(deserialize_with = "crate::lenient::or_default")]
    pub restored: bool,
    /// RFC 3339; [`GO_ZERO_TIME`] when never restored.
    #[serde(deserialize_with = "crate::lenient::or_default")]
    pub restored_time: String,
    /// The image as the container was created from it.
    pub rootfs_image: String,
    /// A pullable name of the image.
    pub rootfs_image_name: String,
    /// The image id.
    pub rootfs_image_ref: String,
    /// The runtime handler.
    pub runtime: String,
}

impl ConfigDump {
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    pub fn from_value(v: serde_json::Value) -> serde_json::Result<Self> {
        serde_json::from_value(v)
    }

    /// The base image to create a restored container from: a pullable NAME@DIGEST or name,
    /// else the image id.
    pub fn base_image(&self) -> String {
        [
            &self.rootfs_image_name,
            &self.rootfs_image,
            &self.rootfs_image_ref,
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ConfigDump {
        ConfigDump {
            id: "abc".into(),
            name: "pod_ns_c".into(),
            rootfs_image: "docker.io/library/busybox:1".into(),
            rootfs_image_ref: "sha256:00".into(),
            rootfs_image_name: "busybox:1".into(),
            runtime: "runc".into(),
            created_time: "2026-11-26T00:02:29.597414280Z".into(),
            checkpointed_time: "2026-11-26T00:03:00.000000000Z".into(),
            restored_time: GO_ZERO_TIME.into(),
            restored: false,
        }
    }

    #[test]
    fn written_as_before() {
        // What the shim wrote with `json!` before this type: the same bytes.
        let c = sample();
        let old = serde_json::json!({
            "id": c.id,
            "name": c.name,
            "rootfsImage": c.rootfs_image,
            "rootfsImageRef": c.rootfs_image_ref,
            "rootfsImageName": c.rootfs_image_name,
            "runtime": c.runtime,
            "createdTime": c.created_time,
            "checkpointedTime": c.checkpointed_time,
            "restoredTime": GO_ZERO_TIME,
            "restored": false,
        });
        assert_eq!(
            String::from_utf8(c.to_vec()).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        assert_eq!(ConfigDump::from_slice(&c.to_vec()).unwrap(), c);
    }

    #[test]
    fn foreign_archives_read() {
        // CRI-O style: other keys, some missing, a field of another type.
        let c = ConfigDump::from_slice(
            br#"{"id":"x","rootfsImageName":"img","OCIRuntime":"crun","restored":"no","createdTime":5}"#,
        )
        .unwrap();
        assert_eq!(c.id, "x");
        assert_eq!(c.base_image(), "img");
        assert!(!c.restored);
        assert_eq!(c.created_time, "");
        assert_eq!(
            ConfigDump::from_slice(b"{}").unwrap(),
            ConfigDump::default()
        );
    }
}
