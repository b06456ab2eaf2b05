//! The JSON members that describe the container: `config.dump` (checkpointctl's container
//! config, its format in `ckpt_format::config_dump`), `status.dump` (CRI ContainerStatus as
//! containerd 2.1 writes and reads it).

#![forbid(unsafe_code)]

use std::time::SystemTime;

use ckpt_format::config_dump::{ConfigDump, GO_ZERO_TIME};
use ckpt_format::spec_dump::keys;
use serde_json::{json, Map, Value};

use super::Target;
use ckpt_format::time::{from_unix_nanos, rfc3339};

/// `config.dump` of a checkpoint the shim makes.
pub fn config_dump(target: &Target, runtime: &str, checkpointed: SystemTime) -> Vec<u8> {
    let image_name = target
        .annotations_spec
        .get(keys::IMAGE_NAME)
        .cloned()
        .unwrap_or_else(|| target.image.clone());
    ConfigDump {
        id: target.id.clone(),
        name: target.full_name(),
        rootfs_image: target.image.clone(),
        rootfs_image_ref: target.image_ref.clone(),
        rootfs_image_name: image_name,
        runtime: runtime.to_owned(),
        created_time: rfc3339(from_unix_nanos(target.status.created_at)),
        checkpointed_time: rfc3339(checkpointed),
        restored_time: GO_ZERO_TIME.to_owned(),
        restored: false,
    }
    .to_vec()
}

/// CRI ContainerStatus with the protobuf field names and Go's omit-empty rule, which is
/// what containerd 2.1's restore parses.
pub fn status_dump(target: &Target) -> Vec<u8> {
    let s = &target.status;
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        let empty = match &v {
            Value::String(x) => x.is_empty(),
            Value::Number(n) => n.as_i64() == Some(0),
            Value::Object(o) => o.is_empty(),
            Value::Null => true,
            _ => false,
        };
        if !empty {
            m.insert(k.to_owned(), v);
        }
    };
    put("id", json!(s.id));
    if let Some(md) = &s.metadata {
        let mut meta = Map::new();
        meta.insert("name".into(), json!(md.name));
        if md.attempt != 0 {
            meta.insert("attempt".into(), json!(md.attempt));
        }
        put("metadata", Value::Object(meta));
    }
    put("state", json!(s.state));
    put("created_at", json!(s.created_at));
    put("started_at", json!(s.started_at));
    put("finished_at", json!(s.finished_at));
    put("exit_code", json!(s.exit_code));
    if let Some(image) = &s.image {
        put("image", json!({ "image": image.image }));
    }
    put("image_ref", json!(s.image_ref));
    put("reason", json!(s.reason));
    put("message", json!(s.message));
    put("labels", json!(s.labels));
    put("annotations", json!(s.annotations));
    put("log_path", json!(s.log_path));
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}
