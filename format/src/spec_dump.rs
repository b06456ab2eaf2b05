//! `spec.dump`: the checkpointed container's OCI runtime spec, as far as the readers need it
//! (annotations, mounts, root). The same view reads a bundle's `config.json` (the runc
//! wrapper). Everything else in the spec is ignored, and a field of an unexpected type reads
//! as empty: the spec comes from any engine.

use serde_json::{Map, Value};

/// containerd's and CRI-O's annotation keys for the same facts, in the order they are tried.
pub mod keys {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const CONTAINER_NAME: &[&str] = &[
        "io.kubernetes.cri.container-name",
        "io.kubernetes.container.name",
    ];
    pub const POD_NAME: &[&str] = &["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"];
    pub const NAMESPACE: &[&str] = &[
        "io.kubernetes.cri.sandbox-namespace",
        "io.kubernetes.pod.namespace",
    ];
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// Which engine made the container (CRI-O, Podman).
    pub const MANAGER: &str = "io.container.manager";
}

/// The spec, as far as the readers need it. Read from a JSON value by hand rather than
/// derived: the wrapper parses a bundle's spec on every restore, and the hand-written reader
/// is lenient by construction and smaller in its binary than derived code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    /// The annotations as written; [`Spec::get`] reads the string ones.
    pub annotations: Map<String, Value>,
    pub mounts: Vec<Mount>,
    /// `root.path`, when a string.
    pub root_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mount {
    pub destination: Option<String>,
    /// `type`.
    pub kind: Option<String>,
    /// The string options.
    pub options: Vec<String>,
}

fn string(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Spec {
    /// Any JSON reads (a spec of another shape reads as empty); only bytes that are not
    /// JSON fail.
    pub fn from_slice(bytes: &[u8]) -> serde_json::Result<Self> {
        Ok(Spec::from_value(serde_json::from_slice(bytes)?))
    }

    pub fn from_value(mut v: Value) -> Self {
        let annotations = match v.get_mut("annotations").map(Value::take) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let mounts = v
            .get("mounts")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|m| Mount {
                        destination: string(m, "destination"),
                        kind: string(m, "type"),
                        options: strings(m.get("options")),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let root_path = v.get("root").and_then(|r| string(r, "path"));
        Spec {
            annotations,
            mounts,
            root_path,
        }
    }

    /// The annotation `key`, if it is a string.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.annotations.get(key)?.as_str()
    }

    /// The first string annotation among `keys`, if it is not empty.
    pub fn annotation(&self, keys: &[&str]) -> Option<&str> {
        keys.iter()
            .find_map(|k| self.get(k))
            .filter(|s| !s.is_empty())
    }

    /// The rootfs directory relative to the bundle (`rootfs` when the spec names none).
    pub fn root_path(&self) -> &str {
        self.root_path.as_deref().unwrap_or("rootfs")
    }
}

impl Mount {
    /// A bind mount, by type or by option.
    pub fn is_bind(&self) -> bool {
        self.kind.as_deref() == Some("bind")
            || self.options.iter().any(|o| o == "rbind" || o == "bind")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_readers_need_and_tolerates_the_rest() {
        let s = Spec::from_slice(
            br#"{"ociVersion":"1.1.0","root":{"path":"/r"},
                "annotations":{"io.kubernetes.cri.container-name":"c","n":5,"io.kubernetes.pod.name":""},
                "mounts":[{"destination":"/d","type":"bind","options":["rbind",3]},{"destination":7},"x"]}"#,
        )
        .unwrap();
        assert_eq!(s.annotation(keys::CONTAINER_NAME), Some("c"));
        assert_eq!(s.annotation(keys::POD_NAME), None);
        assert_eq!(s.get("n"), None);
        assert_eq!(s.root_path(), "/r");
        assert_eq!(s.mounts.len(), 3);
        assert!(s.mounts[0].is_bind());
        assert_eq!(s.mounts[0].destination.as_deref(), Some("/d"));
        assert_eq!(s.mounts[1].destination, None);
        let empty = Spec::from_slice(br#"{"annotations":null,"mounts":{},"root":1}"#).unwrap();
        assert_eq!(empty, Spec::default());
        assert_eq!(Spec::from_value(serde_json::json!([1])), Spec::default());
        assert_eq!(empty.root_path(), "rootfs");
    }
}
