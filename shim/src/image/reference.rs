//! Image names the way containerd's CRI and registries see them: `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/ckpt/x` is that registry's
//! `ckpt/x:latest`. CRI stores images under the fully qualified name, so an imported image
//! must be named that way for ImageStatus and CreateContainer to find it.

use std::fmt;

/// Why an image name was refused; shown after `image name "<input>": `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("image name {input:?}: {problem}")]
pub struct ReferenceError {
    pub input: String,
    pub problem: ReferenceProblem,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceProblem {
    #[error("{0}")]
    Digest(super::BadDigest),
    #[error("tag {0:?} is not valid")]
    Tag(String),
    #[error("registry host is not valid")]
    Host,
    #[error(
        "the repository must be lowercase letters, digits and single separators (. _ -) between /"
    )]
    Repository,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (and port): `docker.io`, `localhost:5000`, `quay.io`.
    pub domain: String,
    /// Repository path inside the registry: `library/busybox`, `ckpt/counter`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by one '.', one or two '_', or any number of '-'.
    let bytes = c.as_bytes();
    if bytes.is_empty()
        || !bytes[0].is_ascii_alphanumeric()
        || !bytes[bytes.len() - 1].is_ascii_alphanumeric()
    {
        return false;
    }
    let mut prev_sep = String::new();
    for &b in bytes {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            if !prev_sep.is_empty() {
                let ok = prev_sep == "." || prev_sep == "_" || prev_sep == "__" || {
                    prev_sep.bytes().all(|s| s == b'-')
                };
                if !ok {
                    return false;
                }
                prev_sep.clear();
            }
        } else if matches!(b, b'.' | b'_' | b'-') {
            prev_sep.push(b as char);
        } else {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Splits a name as written into name, tag and digest, without checking or normalising
/// them: `localhost:5000/a/b:v1@sha256:..` -> (`localhost:5000/a/b`, `v1`, `sha256:..`). A
/// ':' is a tag's only when no '/' follows it (a registry port is not a tag).
pub fn split(input: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (input, None),
    };
    match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..]), digest),
        _ => (rest, None, digest),
    }
}

impl Reference {
    /// Parses and normalises a name (`[domain/]path[:tag][@sha256:...]`); a name without
    /// tag or digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let bad = |problem| ReferenceError {
            input: input.to_owned(),
            problem,
        };
        let (rest, tag, digest) = split(input);
        if let Some(d) = digest {
            super::digest_hex(d).map_err(|e| bad(ReferenceProblem::Digest(e)))?;
        }
        let (tag, digest) = (tag.map(str::to_owned), digest.map(str::to_owned));
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad(ReferenceProblem::Tag(t.clone())));
            }
        }
        let (domain, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => ("docker.io".to_owned(), rest.to_owned()),
        };
        if domain.is_empty()
            || !domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        {
            return Err(bad(ReferenceProblem::Host));
        }
        let repository = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.len() > 255 || !repository.split('/').all(valid_component) {
            return Err(bad(ReferenceProblem::Repository));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Ok(Reference {
            domain,
            repository,
            tag,
            digest,
        })
    }

    /// What a manifest PUT/GET names: the digest if there is one, else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host the registry API answers on (Docker Hub's API is not on `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.domain == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.domain
        }
    }

    /// A file name for the image: `localhost_5000_ckpt_counter_v1.oci`.
    pub fn sanitised(&self) -> String {
        let mut name = format!("{}/{}", self.domain, self.repository);
        if let Some(t) = &self.tag {
            name.push('_');
            name.push_str(t);
        }
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
            + ".oci"
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_containerd() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r = Reference::parse("localhost:5000/ckpt-shim/counter:v1").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.repository, "ckpt-shim/counter");
        assert_eq!(r.object(), "v1");
        assert_eq!(r.sanitised(), "localhost_5000_ckpt-shim_counter_v1.oci");
        let r = Reference::parse("localhost/ckpt/x").unwrap();
        assert_eq!(r.to_string(), "localhost/ckpt/x:latest");
        let r = Reference::parse(&format!("quay.io/a/b@sha256:{}", "0".repeat(64))).unwrap();
        assert_eq!(r.tag, None);
        assert!(r.object().starts_with("sha256:"));
        assert_eq!(
            Reference::parse("me/app:1.0").unwrap().to_string(),
            "docker.io/me/app:1.0"
        );
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "Upper/case",
            "a//b",
            "a/b:",
            "a/b:-x",
            "a/../b",
            "a/b@sha256:xyz",
            "local host/x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        // The messages the CLI prints, unchanged by the typed error.
        assert_eq!(
            Reference::parse("a/b:-x").unwrap_err().to_string(),
            r#"image name "a/b:-x": tag "-x" is not valid"#
        );
        assert_eq!(
            Reference::parse("x@sha256:zz").unwrap_err().to_string(),
            r#"image name "x@sha256:zz": "sha256:zz" is not a sha256 digest"#
        );
    }
}
