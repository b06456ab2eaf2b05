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
use ckpt_format::members;
use sha2::{Digest, Sha256};

use super::{BadDigest, CheckpointFacts, Descriptor, Manifest, Platform, Reference};
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
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, BadDigest> {
        blob_path(&self.dir, digest)
    }

    /// Every blob, children first (the order a push or an import needs).
    pub fn blobs(&self) -> [&Descriptor; 4] {
        [&self.layer, &self.config, &self.manifest, &self.index]
    }
}

pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, BadDigest> {
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
        format!("sha256:{}", hex::encode(s.0.clone().finalize())),
        s.1,
    )
}

/// Why a member of the archive cannot go into a checkpoint image.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("member {0:?} is a symbolic link: a checkpoint image holds only regular files and directories")]
    Symlink(String),
    #[error(
        "member {0:?} is a hard link: a checkpoint image holds only regular files and directories"
    )]
    HardLink(String),
    #[error("member {name:?} is a {kind:?} entry: a checkpoint image holds only regular files and directories")]
    Kind { name: String, kind: tar::EntryType },
    #[error("member {0:?}: name is not UTF-8")]
    NotUtf8(String),
    #[error("member {0:?} has an absolute path")]
    Absolute(String),
    #[error("member {0:?} contains \"..\"")]
    ParentDir(String),
    #[error("member {0:?} has an empty name")]
    Empty(String),
}

/// What a member of the archive becomes in the layer: its checked, normalised name, or
/// `None` for entries that carry no file (the archive's own `./`, pax global headers).
pub fn member_name(raw: &Path, kind: tar::EntryType) -> Result<Option<String>, MemberError> {
    let shown = || raw.display().to_string();
    let dir = match kind {
        tar::EntryType::Regular => false,
        tar::EntryType::Directory => true,
        tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::Symlink => return Err(MemberError::Symlink(shown())),
        tar::EntryType::Link => return Err(MemberError::HardLink(shown())),
        other => {
            return Err(MemberError::Kind {
                name: shown(),
                kind: other,
            })
        }
    };
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => {
                parts.push(p.to_str().ok_or_else(|| MemberError::NotUtf8(shown()))?)
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(MemberError::Absolute(shown()))
            }
            Component::ParentDir => return Err(MemberError::ParentDir(shown())),
        }
    }
    if parts.is_empty() {
        return if dir {
            Ok(None)
        } else {
            Err(MemberError::Empty(shown()))
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
        let Some(name) =
            member_name(&raw_name, kind).with_context(|| archive.display().to_string())?
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
                members::CONFIG_DUMP
            } else {
                members::SPEC_DUMP
            }
        );
    }
    let c = crate::archive::metadata::container(&cp);
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
        criu_version: crate::archive::metadata::criu_version(&cp),
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
    let path = blob_path(dir, &digest)?;
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
    std::fs::rename(&layer_tmp, blob_path(dir, &layer_digest)?)?;

    facts.archive_sha256 = archive_digest
        .strip_prefix("sha256:")
        .unwrap_or(&archive_digest)
        .to_owned();
    let annotations = facts.annotations();
    // Reproducible: the same archive gives the same image (created = checkpoint time).
    let created = facts
        .checkpointed
        .clone()
        .unwrap_or_else(|| ckpt_format::time::rfc3339(SystemTime::now()));
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
    use crate::image::{
        CRIO_NAME, CRIU_NAME, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER, PODMAN_NAME, SHIM_NAME,
    };
    use tar::EntryType as T;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ckpt-image-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// name -> (is_dir, bytes, mode) of a tar, plain or gzip.
    fn members(path: &Path) -> BTreeMap<String, (bool, Vec<u8>, u32)> {
        let mut f = File::open(path).unwrap();
        let compressed = source::sniff(&mut f).unwrap() == Compression::Gzip;
        let r: Box<dyn Read> = if compressed {
            Box::new(flate2::read::GzDecoder::new(f))
        } else {
            Box::new(f)
        };
        let mut out = BTreeMap::new();
        for e in tar::Archive::new(r).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let name = name
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            let dir = e.header().entry_type().is_dir();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.insert(name, (dir, data, mode));
        }
        out
    }

    fn json(dir: &Path, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(blob_path(dir, digest).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn builds_the_image_of_a_fixture() {
        for (fixture_name, engine) in [
            ("shim-1.6-suspect.tar.gz", "containerd"),
            ("containerd-2.1-suspect.tar.gz", "containerd"),
        ] {
            let tmp = scratch("build");
            let archive = fixture(fixture_name);
            let name = Reference::parse("localhost:5000/ckpt/suspect:v1").unwrap();
            let out = tmp.join("img.oci");
            let built = build(&archive, &name, &out, false).unwrap();
            assert_eq!(built.dir, out);

            // The layout: oci-layout, index.json naming the index blob by the image name.
            let layout: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("oci-layout")).unwrap()).unwrap();
            assert_eq!(layout["imageLayoutVersion"], "1.0.0");
            let top: Manifest =
                serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
            assert_eq!(top.manifests.len(), 1);
            assert_eq!(top.manifests[0].digest, built.index.digest);
            assert_eq!(
                top.manifests[0].annotations["io.containerd.image.name"],
                "localhost:5000/ckpt/suspect:v1"
            );
            assert_eq!(
                top.manifests[0].annotations["org.opencontainers.image.ref.name"],
                "v1"
            );

            // Every blob is named by its digest and has the size its descriptor says.
            for d in built.blobs() {
                let bytes = std::fs::read(blob_path(&out, &d.digest).unwrap()).unwrap();
                assert_eq!(bytes.len() as u64, d.size);
                assert_eq!(crate::image::sha256_digest(&bytes), d.digest);
            }

            // Index and manifest: OCI media types, schema 2, the annotations on both.
            let index = json(&out, &built.index.digest);
            assert_eq!(index["schemaVersion"], 2);
            assert_eq!(index["mediaType"], MEDIA_INDEX);
            assert_eq!(
                index["manifests"][0]["digest"],
                built.manifest.digest.as_str()
            );
            assert_eq!(index["manifests"][0]["platform"]["os"], "linux");
            let manifest = json(&out, &built.manifest.digest);
            assert_eq!(manifest["schemaVersion"], 2);
            assert_eq!(manifest["mediaType"], crate::image::MEDIA_MANIFEST);
            assert_eq!(manifest["config"]["mediaType"], MEDIA_CONFIG);
            assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
            assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_LAYER);
            assert_eq!(manifest["annotations"], index["annotations"]);
            let a = &manifest["annotations"];
            for k in [CRIO_NAME, CRIU_NAME, PODMAN_NAME, SHIM_NAME] {
                assert_eq!(a[k], "suspect", "{k}");
            }
            assert_eq!(a["io.ckpt-shim.checkpoint.pod.name"], "web-0");
            assert_eq!(a["io.ckpt-shim.checkpoint.pod.namespace"], "evidence");
            assert_eq!(a["org.criu.checkpoint.pod.namespace"], "evidence");
            assert_eq!(
                a["io.ckpt-shim.checkpoint.rootfsImageName"],
                "localhost:5000/ckpt-shim/busybox:latest"
            );
            assert_eq!(
                a["io.ckpt-shim.checkpoint.rootfsImageRef"],
                "sha256:75e88eb625fb8d4d64e7f855c6a7bdf52ec0fe5a3ac1096e510e53dea2ff2fc2"
            );
            assert_eq!(a["io.ckpt-shim.checkpoint.engine"], engine);
            assert_eq!(a["io.ckpt-shim.checkpoint.criu.version"], "4.2.1");
            assert_eq!(a["org.criu.checkpoint.criu.version"], "40201");
            let archive_hex = hex::encode(Sha256::digest(std::fs::read(&archive).unwrap()));
            assert_eq!(
                a["io.ckpt-shim.checkpoint.archive.sha256"],
                archive_hex.as_str()
            );

            // Config: host platform, the layer's diff id, created = checkpoint time.
            let config = json(&out, &built.config.digest);
            assert_eq!(
                config["architecture"],
                Platform::host().architecture.as_str()
            );
            assert_eq!(config["os"], "linux");
            assert_eq!(config["rootfs"]["type"], "layers");
            assert_eq!(config["rootfs"]["diff_ids"][0], built.layer.digest.as_str());
            let cp = crate::archive::scan(&archive, Default::default()).unwrap();
            assert_eq!(
                config["created"],
                cp.config.as_ref().unwrap()["checkpointedTime"]
            );

            // The layer: the archive's members at the root, same bytes and modes.
            let layer = members(&blob_path(&out, &built.layer.digest).unwrap());
            let want = members(&archive);
            assert_eq!(layer, want, "{fixture_name}");
            assert_eq!(built.members, want.len());

            // Reproducible: the same archive builds the same image.
            let again = build(&archive, &name, &tmp.join("again.oci"), false).unwrap();
            assert_eq!(again.index.digest, built.index.digest);

            // A plain tar of the same members gives the same layer.
            let plain = tmp.join("plain.tar");
            let mut gz = flate2::read::GzDecoder::new(File::open(&archive).unwrap());
            io::copy(&mut gz, &mut File::create(&plain).unwrap()).unwrap();
            let from_plain = build(&plain, &name, &tmp.join("plain.oci"), false).unwrap();
            assert_eq!(from_plain.layer.digest, built.layer.digest);
            // And so does a zstd one.
            let zst = tmp.join("plain.tar.zst");
            ruzstd::encoding::compress(
                File::open(&plain).unwrap(),
                File::create(&zst).unwrap(),
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            let from_zstd = build(&zst, &name, &tmp.join("zstd.oci"), false).unwrap();
            assert_eq!(from_zstd.layer.digest, built.layer.digest);
            assert_eq!(
                from_zstd.annotations["io.ckpt-shim.checkpoint.archive.sha256"],
                hex::encode(Sha256::digest(std::fs::read(&zst).unwrap()))
            );

            // An existing output is never overwritten.
            let e = build(&archive, &name, &out, false).unwrap_err();
            assert!(e.to_string().contains("already exists"), "{e}");
            std::fs::remove_dir_all(&tmp).unwrap();
        }
    }

    /// A tar with one entry whose raw name and type are exactly as given (tar's own
    /// builder refuses `..` and absolute names, so the header is written by hand).
    fn raw_tar(path: &Path, entries: &[(&str, T, &[u8])]) {
        let mut b = tar::Builder::new(File::create(path).unwrap());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            if *kind == T::Symlink {
                h.set_link_name("/etc/shadow").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
    }

    #[test]
    fn refuses_archives_with_bad_members() {
        let tmp = scratch("bad");
        let name = Reference::parse("x/y:z").unwrap();
        let base: &[(&str, T, &[u8])] = &[
            ("config.dump", T::Regular, br#"{"name":"c"}"#),
            (
                "spec.dump",
                T::Regular,
                br#"{"annotations":{"io.kubernetes.cri.container-name":"c"}}"#,
            ),
        ];
        for (i, (bad, why)) in [
            (("../escape", T::Regular, &b"x"[..]), ".."),
            (("/etc/cron.d/x", T::Regular, &b"x"[..]), "absolute"),
            (("checkpoint/link", T::Symlink, &b""[..]), "symbolic link"),
            (("dev", T::Block, &b""[..]), "Block"),
            (("config.dump", T::Regular, &b"{}"[..]), "appears twice"),
        ]
        .into_iter()
        .enumerate()
        {
            let archive = tmp.join(format!("bad-{i}.tar"));
            let mut entries = base.to_vec();
            entries.push(bad);
            raw_tar(&archive, &entries);
            let out = tmp.join(format!("bad-{i}.oci"));
            let e = format!("{:#}", build(&archive, &name, &out, false).unwrap_err());
            assert!(e.contains(why), "{}: {e}", bad.0);
            assert!(!out.exists(), "nothing is left behind");
        }
        // The same without the bad member builds.
        let good = tmp.join("good.tar");
        raw_tar(&good, base);
        let built = build(&good, &name, &tmp.join("good.oci"), false).unwrap();
        assert_eq!(built.annotations[CRIU_NAME], "c");
        // Not a checkpoint at all.
        let other = tmp.join("other.tar");
        raw_tar(&other, &[("hello.txt", T::Regular, b"hi")]);
        let e = build(&other, &name, &tmp.join("other.oci"), false).unwrap_err();
        assert!(e.to_string().contains("not a container checkpoint"), "{e}");
        // Leftovers: only what the good build made.
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "temporary directories left: {left:?}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

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
            let e = ok(p, k).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
