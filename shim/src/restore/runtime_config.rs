//! Is the runtime set up for wrapper restores? containerd reports its CRI configuration in
//! a verbose Status (`info["config"]`, JSON). A restore needs, for the runtime handler the
//! pod runs with: the runc options' `BinaryName` naming the wrapper, and
//! `container_annotations` letting the restore annotation into the spec. Without the second,
//! containerd drops the annotation silently and the container would start fresh.

use serde_json::Value;

use ckpt_format::plan::ANNOTATION;

/// The runtimes table, wherever this containerd version puts it.
fn runtimes_table(config: &Value) -> Option<(&serde_json::Map<String, Value>, String)> {
    match config {
        Value::Object(m) => {
            if let Some(Value::Object(r)) = m.get("runtimes") {
                let default = m
                    .get("defaultRuntimeName")
                    .and_then(Value::as_str)
                    .unwrap_or("runc")
                    .to_owned();
                return Some((r, default));
            }
            m.values().find_map(runtimes_table)
        }
        _ => None,
    }
}

/// containerd's pass-through rule: an entry matches a key exactly, or as a prefix when it
/// ends in `*`.
fn passes(patterns: &[&str], key: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => *p == key,
    })
}

/// What keeps containerd from running wrapper restores; each names the setting to add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSetUp {
    #[error("the runtime's Status does not describe its runtimes (not containerd?)")]
    NoRuntimes,
    #[error("the runtime has no runtime handler {0:?}")]
    NoHandler(String),
    #[error("containerd's runtime {runtime:?} does not run the restore wrapper: set its options BinaryName = \"/usr/local/bin/{wrapper}\" (now {now:?})")]
    NoWrapper {
        runtime: String,
        wrapper: String,
        now: String,
    },
    #[error("containerd's runtime {runtime:?} drops the restore annotation: add \"{ANNOTATION}\" to its container_annotations (now {now:?})")]
    DropsAnnotation { runtime: String, now: Vec<String> },
}

/// Checks the configuration for `handler` (empty: the default runtime).
pub fn check(config: &Value, handler: &str, wrapper_binary: &str) -> Result<(), NotSetUp> {
    let (runtimes, default) = runtimes_table(config).ok_or(NotSetUp::NoRuntimes)?;
    let name = if handler.is_empty() {
        default.as_str()
    } else {
        handler
    };
    let runtime = runtimes
        .get(name)
        .ok_or_else(|| NotSetUp::NoHandler(name.to_owned()))?;
    let binary = runtime["options"]["BinaryName"].as_str().unwrap_or("");
    let file = std::path::Path::new(binary)
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if file != wrapper_binary {
        return Err(NotSetUp::NoWrapper {
            runtime: name.to_owned(),
            wrapper: wrapper_binary.to_owned(),
            now: binary.to_owned(),
        });
    }
    // The JSON key follows the Go field where the struct has no json tag.
    let annotations: Vec<&str> = [
        "container_annotations",
        "ContainerAnnotations",
        "containerAnnotations",
    ]
    .iter()
    .find_map(|k| runtime[*k].as_array())
    .map(|a| a.iter().filter_map(Value::as_str).collect())
    .unwrap_or_default();
    if !passes(&annotations, ANNOTATION) {
        return Err(NotSetUp::DropsAnnotation {
            runtime: name.to_owned(),
            now: annotations.iter().map(|a| a.to_string()).collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(binary: &str, annotations: &[&str]) -> Value {
        serde_json::json!({
            "containerd": {
                "defaultRuntimeName": "runc",
                "runtimes": {
                    "runc": {
                        "runtimeType": "io.containerd.runc.v2",
                        "options": {"BinaryName": binary, "Root": "/run/x"},
                        "container_annotations": annotations,
                    }
                }
            }
        })
    }

    #[test]
    fn names_the_missing_setting() {
        let ok = config("/usr/local/bin/ckpt-shim-runc", &["io.ckpt-shim.*"]);
        assert_eq!(check(&ok, "", "ckpt-shim-runc"), Ok(()));
        let e = check(&config("", &["io.ckpt-shim.*"]), "", "ckpt-shim-runc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("BinaryName"), "{e}");
        let e = check(
            &config("/x/ckpt-shim-runc", &["org.criu.*"]),
            "",
            "ckpt-shim-runc",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("container_annotations"), "{e}");
        let e = check(&ok, "kata", "ckpt-shim-runc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kata"), "{e}");
        let exact = config("/x/ckpt-shim-runc", &[ANNOTATION]);
        assert_eq!(check(&exact, "runc", "ckpt-shim-runc"), Ok(()));
    }
}
