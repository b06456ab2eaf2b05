//! Building a checkpoint image into an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/...`).
//!
//! The archive is read once for its metadata (`archive::scan`, which seeks past what it
//! does not need) and once more to re-pack its members into the layer, streamed: the
//! layer is written and hashed in the same pass, and so is the archive itself (its digest
//! goes into the annotations). Member names are checked on the way: relative, no `..`,
//! regular files and directories only, each once.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use super::{CheckpointFacts, Descriptor, Manifest, Platform, Reference};
use crate::archive::source::{self, Compression};

/// The image as built: where its layout is and its descriptors.
#[derive(Clone, Debug)]
pub struct Built {
    pub dir: PathBuf,
    pub name: Reference,
    /// The image index, what the tag points at.
    pub index: Descriptor,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layer: Descriptor,
    pub annotations: BTreeMap<String, String>,
    /// Files and directories in the layer.
    pub members: usize,
}

impl Built {
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, String> {
        blob_path(&self.dir, digest)
    }

    /// Every blob, children first (the order a push or an import needs).
    pub fn blobs(&self) -> [&Descriptor; 4] {
        [&self.layer, &self.config, &self.manifest, &self.index]
    }
}

pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, String> {
    Ok(dir.join("blobs/sha256").join(super::digest_hex(digest)?))
}

/// Hashes and counts what passes through.
struct Hashing<T> {
    inner: T,
    state: Rc<RefCell<(Sha256, u64)>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut s = self.state.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn take(state: &Rc<RefCell<(Sha256, u64)>>) -> (String, u64) {
    let s = state.borrow();
    (
        format!("sha256:{}", super::hex(&s.0.clone().finalize())),
        s.1,
    )
}

/// What a member of the archive becomes in the layer: its checked, normalised name, or
/// `None` for entries that carry no file (the archive's own `./`, pax global headers).
pub fn member_name(raw: &Path, kind: tar::EntryType) -> Result<Option<String>, String> {
    let shown = raw.display();
    let dir = match kind {
        tar::EntryType::Regular => false,
        tar::EntryType::Directory => true,
        tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::Symlink => {
            return Err(format!(
                "member {shown:?} is a symbolic link: a checkpoint image holds only regular files and directories"
            ))
        }
        tar::EntryType::Link => {
            return Err(format!(
                "member {shown:?} is a hard link: a checkpoint image holds only regular files and directories"
            ))
        }
        other => {
            return Err(format!(
                "member {shown:?} is a {other:?} entry: a checkpoint image holds only regular files and directories"
            ))
        }
    };
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| format!("member {shown:?}: name is not UTF-8"))?,
            ),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("member {shown:?} has an absolute path"))
            }
            Component::ParentDir => return Err(format!("member {shown:?} contains \"..\"")),
        }
    }
    if parts.is_empty() {
        return if dir {
            Ok(None)
        } else {
            Err(format!("member {shown:?} has an empty name"))
        };
    }
    Ok(Some(parts.join("/")))
}

/// Re-packs the archive's members into `layer`, checking names. Returns the archive's
/// digest and size, and the number of members written.
fn repack(
    archive: &Path,
    layer: &mut tar::Builder<impl Write>,
    progress: bool,
) -> anyhow::Result<(String, u64, usize)> {
    let mut file =
        File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let compression = source::sniff(&mut file)?;
    let len = file.metadata()?.len();
    let bar = source::progress(archive, len, progress);
    let state = Rc::new(RefCell::new((Sha256::new(), 0u64)));
    let raw = source::Counting {
        inner: Hashing {
            inner: file,
            state: state.clone(),
        },
        bar: bar.clone(),
        pos: 0,
        read: Default::default(),
    };
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 16,
            raw,
        ))),
        Compression::Zstd => Box::new(source::ZstdFrames::new(BufReader::with_capacity(
            1 << 16,
            raw,
        ))?),
        Compression::Directory => bail!("{} is a directory", archive.display()),
    };
    let mut tar = tar::Archive::new(reader);
    let mut seen = BTreeSet::new();
    let mut count = 0usize;
    for entry in tar
        .entries()
        .with_context(|| format!("{}: not a tar archive", archive.display()))?
    {
        let mut entry = entry.with_context(|| format!("{}: bad tar entry", archive.display()))?;
        let kind = entry.header().entry_type();
        let raw_name = entry.path()?.into_owned();
        let Some(name) = member_name(&raw_name, kind)
            .map_err(|e| anyhow::anyhow!("{}: {e}", archive.display()))?
        else {
            continue;
        };
        if !seen.insert(name.clone()) {
            bail!("{}: member {name:?} appears twice", archive.display());
        }
        let from = entry.header();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(from.mode().unwrap_or(0o600) & 0o7777);
        header.set_mtime(from.mtime().unwrap_or(0));
        header.set_uid(from.uid().unwrap_or(0));
        header.set_gid(from.gid().unwrap_or(0));
        if kind == tar::EntryType::Directory {
            header.set_size(0);
            layer.append_data(&mut header, format!("{name}/"), io::empty())?;
        } else {
            header.set_size(entry.size());
            layer
                .append_data(&mut header, &name, &mut entry)
                .with_context(|| format!("{}: member {name}", archive.display()))?;
        }
        count += 1;
    }
    // The rest of the file (tar's end blocks, padding) still counts for its digest.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    drop(rest);
    bar.finish_and_clear();
    let (digest, size) = take(&state);
    Ok((digest, size, count))
}

/// Reads what the archive says about the container it holds (`archive_sha256` is left
/// empty: the re-pack computes it).
pub fn facts(archive: &Path) -> anyhow::Result<CheckpointFacts> {
    let cp = crate::archive::scan(archive, crate::archive::Want::default())?;
    if cp.config.is_none() || cp.spec.is_none() {
        bail!(
            "{}: not a container checkpoint (it has no {})",
            archive.display(),
            if cp.config.is_none() {
                "config.dump"
            } else {
                "spec.dump"
            }
        );
    }
    let c = crate::inspect::metadata::container(&cp);
    let container = c
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .context("the checkpoint names no container")?;
    Ok(CheckpointFacts {
        container,
        pod: c.pod,
        namespace: c.namespace,
        base_image: c.image,
        base_image_ref: c.image_ref,
        criu_version: crate::inspect::metadata::criu_version(&cp),
        engine: c.engine,
        runtime: c.runtime,
        archive_sha256: String::new(),
        checkpointed: c
            .checkpointed
            .filter(|t| t.len() >= 20 && !t.starts_with("0001")),
    })
}

fn write_blob(dir: &Path, media_type: &str, data: &[u8]) -> anyhow::Result<Descriptor> {
    let digest = super::sha256_digest(data);
    let path = blob_path(dir, &digest).map_err(anyhow::Error::msg)?;
    std::fs::write(&path, data)?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest,
        size: data.len() as u64,
        annotations: BTreeMap::new(),
        platform: None,
    })
}

/// Builds the image of `archive` named `name` into the new directory `out`.
pub fn build(
    archive: &Path,
    name: &Reference,
    out: &Path,
    progress: bool,
) -> anyhow::Result<Built> {
    if out.exists() {
        bail!(
            "{} already exists: remove it or give another --output",
            out.display()
        );
    }
    // Built beside the target and renamed into place when complete.
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into()),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = build_into(archive, name, &tmp, progress);
    match result {
        Ok(mut built) => {
            std::fs::rename(&tmp, out)
                .with_context(|| format!("cannot move the image to {}", out.display()))?;
            built.dir = out.to_owned();
            Ok(built)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn build_into(
    archive: &Path,
    name: &Reference,
    dir: &Path,
    progress: bool,
) -> anyhow::Result<Built> {
    let mut facts = facts(archive)?;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("cannot create {}", blobs.display()))?;

    // The layer, hashed as it is written.
    let layer_tmp = blobs.join(".layer.tmp");
    let state = Rc::new(RefCell::new((Sha256::new(), 0u64)));
    let out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, File::create(&layer_tmp)?),
        state: state.clone(),
    };
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let (archive_digest, _archive_size, members) = repack(archive, &mut builder, progress)?;
    let mut out = builder.into_inner()?;
    out.flush()?;
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    let (layer_digest, layer_size) = take(&state);
    std::fs::rename(
        &layer_tmp,
        blob_path(dir, &layer_digest).map_err(anyhow::Error::msg)?,
    )?;

    facts.archive_sha256 = archive_digest
        .strip_prefix("sha256:")
        .unwrap_or(&archive_digest)
        .to_owned();
    let annotations = facts.annotations();
    // Reproducible: the same archive gives the same image (created = checkpoint time).
    let created = facts
        .checkpointed
        .clone()
        .unwrap_or_else(|| crate::timefmt::rfc3339(SystemTime::now()));
    let platform = Platform::host();

    let config = serde_json::json!({
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": { "Labels": {} },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{
            "created": created,
            "created_by": format!("ckpt-shim image build ({} members of {})", members,
                archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()),
        }],
    });
    let config = write_blob(dir, super::MEDIA_CONFIG, &serde_json::to_vec(&config)?)?;
    let layer = Descriptor {
        media_type: super::MEDIA_LAYER.into(),
        digest: layer_digest,
        size: layer_size,
        annotations: BTreeMap::new(),
        platform: None,
    };
    let manifest = Manifest {
        schema_version: 2,
        media_type: super::MEDIA_MANIFEST.into(),
        config: Some(config.clone()),
        layers: vec![layer.clone()],
        manifests: Vec::new(),
        annotations: annotations.clone(),
    };
    let mut manifest_desc =
        write_blob(dir, super::MEDIA_MANIFEST, &serde_json::to_vec(&manifest)?)?;
    manifest_desc.platform = Some(platform);
    let index = Manifest {
        schema_version: 2,
        media_type: super::MEDIA_INDEX.into(),
        config: None,
        layers: Vec::new(),
        manifests: vec![manifest_desc.clone()],
        annotations: annotations.clone(),
    };
    let index_desc = write_blob(dir, super::MEDIA_INDEX, &serde_json::to_vec(&index)?)?;

    // The layout's entry point names the image index by the image's name.
    let mut entry = index_desc.clone();
    entry
        .annotations
        .insert("io.containerd.image.name".into(), name.to_string());
    if let Some(tag) = &name.tag {
        entry
            .annotations
            .insert("org.opencontainers.image.ref.name".into(), tag.clone());
    }
    let top = Manifest {
        schema_version: 2,
        media_type: super::MEDIA_INDEX.into(),
        manifests: vec![entry],
        ..Default::default()
    };
    std::fs::write(dir.join("index.json"), serde_json::to_vec_pretty(&top)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Built {
        dir: dir.to_owned(),
        name: name.clone(),
        index: index_desc,
        manifest: manifest_desc,
        config,
        layer,
        annotations,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tar::EntryType as T;

    #[test]
    fn member_names_are_checked() {
        let ok = |p: &str, k| member_name(Path::new(p), k);
        assert_eq!(
            ok("config.dump", T::Regular).unwrap().unwrap(),
            "config.dump"
        );
        assert_eq!(
            ok("./checkpoint/pages-1.img", T::Regular).unwrap().unwrap(),
            "checkpoint/pages-1.img"
        );
        assert_eq!(
            ok("checkpoint/", T::Directory).unwrap().unwrap(),
            "checkpoint"
        );
        assert_eq!(ok("./", T::Directory).unwrap(), None);
        assert_eq!(ok("x", T::XGlobalHeader).unwrap(), None);
        for (p, k, why) in [
            ("/etc/passwd", T::Regular, "absolute"),
            ("../x", T::Regular, "\"..\""),
            ("checkpoint/../../x", T::Regular, "\"..\""),
            ("link", T::Symlink, "symbolic link"),
            ("hard", T::Link, "hard link"),
            ("dev", T::Char, "Char"),
            ("fifo", T::Fifo, "Fifo"),
            ("./", T::Regular, "empty name"),
        ] {
            let e = ok(p, k).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
