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
    /// CRI-O: the container's kubelet-style name, `k8s_<container>_<pod>_<namespace>_<uid>_<n>`.
    pub const CRIO_NAME: &str = "io.kubernetes.cri-o.Name";
    /// CRI-O: the container's CRI labels, as a JSON object.
    pub const CRIO_LABELS: &str = "io.kubernetes.cri-o.Labels";
    /// Which engine made the container (CRI-O, Podman).
    pub const MANAGER: &str = "io.container.manager";
}

/// The pod a container ran in, as a CRI engine named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub pod_uid: String,
}

/// Reads kubelet's naming scheme `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`, which
/// CRI-O keeps as the container's name. Kubernetes names hold no '_', so the fields split
/// cleanly; anything else is not such a name.
pub fn kubelet_name(name: &str) -> Option<PodIdentity> {
    let parts: Vec<&str> = name.split('_').collect();
    match parts[..] {
        ["k8s", container, pod, namespace, uid, attempt]
            if !container.is_empty()
                && !pod.is_empty()
                && !namespace.is_empty()
                && attempt.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(PodIdentity {
                container: container.to_owned(),
                pod: pod.to_owned(),
                namespace: namespace.to_owned(),
                pod_uid: uid.to_owned(),
            })
        }
        _ => None,
    }
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

    /// Where the engine recorded the pod: containerd's annotations, else CRI-O's container
    /// name, else the CRI labels CRI-O keeps (set when kubelet made the container). Empty
    /// fields where the checkpoint says nothing (Podman has no pod or namespace).
    pub fn pod_identity(&self) -> PodIdentity {
        let crio = self.get(keys::CRIO_NAME).and_then(kubelet_name);
        let labels: Option<Map<String, Value>> = self
            .get(keys::CRIO_LABELS)
            .and_then(|l| serde_json::from_str(l).ok());
        let label = |k: &str| {
            labels
                .as_ref()
                .and_then(|l| l.get(k)?.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let pick = |keys: &[&str], from_name: Option<&String>, label_key: &str| {
            self.annotation(keys)
                .map(str::to_owned)
                .or_else(|| from_name.cloned())
                .or_else(|| label(label_key))
                .unwrap_or_default()
        };
        PodIdentity {
            container: pick(
                keys::CONTAINER_NAME,
                crio.as_ref().map(|c| &c.container),
                "io.kubernetes.container.name",
            ),
            pod: pick(
                keys::POD_NAME,
                crio.as_ref().map(|c| &c.pod),
                "io.kubernetes.pod.name",
            ),
            namespace: pick(
                keys::NAMESPACE,
                crio.as_ref().map(|c| &c.namespace),
                "io.kubernetes.pod.namespace",
            ),
            pod_uid: pick(
                &["io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid"],
                crio.as_ref().map(|c| &c.pod_uid),
                "io.kubernetes.pod.uid",
            ),
        }
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
    fn kubelet_names_split_into_their_fields() {
        assert_eq!(
            kubelet_name("k8s_demo-c_demo_lab_a439cc02b576_0"),
            Some(PodIdentity {
                container: "demo-c".into(),
                pod: "demo".into(),
                namespace: "lab".into(),
                pod_uid: "a439cc02b576".into(),
            })
        );
        for not in [
            "",
            "demo-c",
            "k8s_demo_lab_a439cc02b576_0",
            "k8s_c_p_ns_uid_x",
            "k8s__p_ns_uid_0",
            "x8s_c_p_ns_uid_0",
        ] {
            assert_eq!(kubelet_name(not), None, "{not}");
        }
    }

    #[test]
    fn pod_identity_from_containerd_cri_o_name_or_cri_o_labels() {
        let containerd = Spec::from_slice(
            br#"{"annotations":{"io.kubernetes.cri.container-name":"c","io.kubernetes.cri.sandbox-name":"p","io.kubernetes.cri.sandbox-namespace":"ns","io.kubernetes.cri.sandbox-uid":"u"}}"#,
        )
        .unwrap();
        assert_eq!(
            containerd.pod_identity(),
            PodIdentity {
                container: "c".into(),
                pod: "p".into(),
                namespace: "ns".into(),
                pod_uid: "u".into()
            }
        );
        let crio = Spec::from_slice(
            br#"{"annotations":{"io.kubernetes.cri-o.Name":"k8s_demo-c_demo_lab_a439cc02b576_0","io.kubernetes.cri-o.Labels":"{\"app\":\"lab\"}"}}"#,
        )
        .unwrap();
        assert_eq!(crio.pod_identity().namespace, "lab");
        assert_eq!(crio.pod_identity().container, "demo-c");
        let labels_only = Spec::from_slice(
            br#"{"annotations":{"io.kubernetes.cri-o.Name":"demo-c","io.kubernetes.cri-o.Labels":"{\"io.kubernetes.pod.namespace\":\"lab\",\"io.kubernetes.pod.name\":\"demo\"}"}}"#,
        )
        .unwrap();
        assert_eq!(labels_only.pod_identity().namespace, "lab");
        assert_eq!(labels_only.pod_identity().pod, "demo");
        let podman =
            Spec::from_slice(br#"{"annotations":{"io.container.manager":"libpod"}}"#).unwrap();
        assert_eq!(podman.pod_identity(), PodIdentity::default());
    }

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
