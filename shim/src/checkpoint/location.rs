//! Where kubelet asked the archive to go, checked before any work is done.

#![forbid(unsafe_code)]

use std::path::{Component, Path, PathBuf};

use nix::unistd::{access, AccessFlags};

use super::error::{Error, LocationProblem as P};

/// A location that passed every check: absolute, normalised, its directory exists, is
/// writable and lies inside an allowed directory, and nothing is there yet.
#[derive(Debug, Clone)]
pub struct Location {
    pub path: PathBuf,
}

pub fn validate(location: &str, allowed_dirs: &[PathBuf]) -> Result<Location, Error> {
    let bad = |problem: P| Error::Location {
        location: location.to_owned(),
        problem,
    };
    let path = Path::new(location);
    if location.is_empty() || !path.is_absolute() {
        return Err(bad(P::NotAbsolute));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || location.ends_with('/')
    {
        return Err(bad(P::NotAFileName));
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(bad(P::NoFileName));
    };
    // The real directory, symlinks resolved: the allow list is checked against it.
    let parent = parent.canonicalize().map_err(|e| bad(P::Directory(e)))?;
    if !parent.is_dir() {
        return Err(bad(P::ParentNotADirectory));
    }
    let inside = allowed_dirs.is_empty()
        || allowed_dirs.iter().any(|d| {
            d.canonicalize()
                .map(|d| parent.starts_with(d))
                .unwrap_or(false)
        });
    if !inside {
        return Err(bad(P::Outside(
            allowed_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )));
    }
    // (A path with a NUL never gets here: canonicalize above refuses it.)
    if let Err(e) = access(parent.as_path(), AccessFlags::W_OK | AccessFlags::X_OK) {
        return Err(bad(P::NotWritable(std::io::Error::from(e))));
    }
    let path = parent.join(name);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(Error::Exists(location.to_owned()));
    }
    Ok(Location { path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::status::Coded;
    use crate::grpc::Code;

    #[test]
    fn rules() {
        let dir = std::env::temp_dir().join(format!("ckpt-loc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let allowed = vec![dir.clone()];
        let code = |l: &str| validate(l, &allowed).map(|_| ()).unwrap_err().code();
        assert_eq!(code("relative.tar"), Code::InvalidArgument);
        assert_eq!(code(""), Code::InvalidArgument);
        assert_eq!(code("/nonexistent-dir-xyz/a.tar"), Code::InvalidArgument);
        assert_eq!(code("/tmp/a.tar"), Code::InvalidArgument, "outside");
        let escape = format!("{}/../a.tar", dir.display());
        assert_eq!(code(&escape), Code::InvalidArgument);
        let ok = format!("{}/a.tar", dir.display());
        assert!(validate(&ok, &allowed).is_ok());
        std::fs::write(dir.join("a.tar"), b"").unwrap();
        assert_eq!(code(&ok), Code::AlreadyExists);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
