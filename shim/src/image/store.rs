//! Checkpoint images in containerd's own stores, through containerd's API:
//!
//! - [`import`]: the blobs of a built image into the content store (under a lease, with the
//!   `containerd.io/gc.ref.*` labels that keep children alive once the image names the
//!   index), then the image record; optionally the layer unpacked into a snapshot, which
//!   containerd 2.1's CRI restore needs (it mounts the image's snapshot by chain id).
//! - [`checkpoint_image`]: for the restore path, whether an image (by name or id) is a
//!   checkpoint image, and its single layer ([`CheckpointImage::fetch_layer`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::Code;

use super::layout::Built;
use super::{BadDigest, Descriptor, Manifest, Platform};
use crate::api::containerd::services::content::v1 as content;
use crate::api::containerd::services::diff::v1 as diff;
use crate::api::containerd::services::images::v1 as images;
use crate::api::containerd::services::leases::v1 as leases;
use crate::api::containerd::services::snapshots::v1 as snapshots;
use crate::api::containerd::types as ctypes;
use crate::runtime::containerd::Containerd;

/// Blobs are sent to containerd in chunks of this size.
const CHUNK: usize = 1 << 20;
/// Index and manifest blobs larger than this are not read.
const MAX_JSON_BLOB: u64 = 4 << 20;

/// containerd's content and image stores, in the client's namespace, optionally under a
/// lease.
#[derive(Clone)]
pub struct Store {
    containerd: Containerd,
    lease: Option<MetadataValue<Ascii>>,
}

/// What went wrong with containerd's stores. Each message carries its cause (restore shows
/// only `Display`), so causes are fields, not `source()`: a chain would repeat them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lease id {0:?} is not a valid header")]
    LeaseId(String),
    /// A containerd API call failed.
    #[error("{what}: {code:?}: {message}")]
    Api {
        what: String,
        code: Code,
        message: String,
    },
    #[error("containerd closed the write stream")]
    StreamClosed,
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("containerd committed {expected} as {got}")]
    Committed { expected: String, got: String },
    #[error("reading {digest} from containerd: larger than {max} bytes")]
    TooLarge { digest: String, max: u64 },
    #[error("reading {digest} from containerd: the bytes do not match the digest")]
    Corrupt { digest: String },
    #[error("reading {digest} from containerd: got {size} bytes with digest {got}, expected {expected} bytes")]
    Mismatch {
        digest: String,
        size: u64,
        got: String,
        expected: u64,
    },
    #[error("the layer unpacked to diff id {got}, the config says {expected}")]
    DiffId { got: String, expected: String },
    #[error("{digest} is not an image {what}: {error}")]
    NotJson {
        digest: String,
        what: &'static str,
        error: serde_json::Error,
    },
    #[error("index {0} has no manifest for this host")]
    NoManifest(String),
    #[error("checkpoint image {name} has {count} layers; a checkpoint image has exactly one")]
    Layers { name: String, count: usize },
    #[error(transparent)]
    Digest(#[from] BadDigest),
}

impl StoreError {
    fn api(what: impl Into<String>, s: tonic::Status) -> StoreError {
        StoreError::Api {
            what: what.into(),
            code: s.code(),
            message: s.message().to_owned(),
        }
    }

    fn file(path: &Path, error: std::io::Error) -> StoreError {
        StoreError::File {
            path: path.to_owned(),
            error,
        }
    }

    fn is_code(&self, code: Code) -> bool {
        matches!(self, StoreError::Api { code: c, .. } if *c == code)
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn to_api(d: &Descriptor) -> ctypes::Descriptor {
    ctypes::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size as i64,
        annotations: d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn from_api(d: &ctypes::Descriptor) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size.max(0) as u64,
        annotations: d
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        platform: None,
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

impl Store {
    pub fn new(containerd: Containerd) -> Store {
        Store {
            containerd,
            lease: None,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = self.containerd.request(message);
        if let Some(l) = &self.lease {
            r.metadata_mut().insert("containerd-lease", l.clone());
        }
        r
    }

    fn content(&self) -> content::content_client::ContentClient<Channel> {
        content::content_client::ContentClient::new(self.containerd.channel().clone())
            .max_decoding_message_size(16 << 20)
    }

    fn images(&self) -> images::images_client::ImagesClient<Channel> {
        images::images_client::ImagesClient::new(self.containerd.channel().clone())
            .max_decoding_message_size(64 << 20)
    }

    /// A lease that keeps what is written under it until [`Store::end_lease`]; it expires
    /// by itself after an hour should this process die first.
    pub async fn begin_lease(&mut self) -> Result<String, StoreError> {
        let id = unique("ckpt-shim-image");
        let expire = ckpt_format::time::rfc3339(SystemTime::now() + Duration::from_secs(3600));
        let mut client =
            leases::leases_client::LeasesClient::new(self.containerd.channel().clone());
        client
            .create(self.request(leases::CreateRequest {
                id: id.clone(),
                labels: HashMap::from([("containerd.io/gc.expire".into(), expire)]),
            }))
            .await
            .map_err(|s| StoreError::api("creating a lease", s))?;
        self.lease = Some(id.parse().map_err(|_| StoreError::LeaseId(id.clone()))?);
        Ok(id)
    }

    pub async fn end_lease(&mut self, id: &str) -> Result<(), StoreError> {
        self.lease = None;
        let mut client =
            leases::leases_client::LeasesClient::new(self.containerd.channel().clone());
        client
            .delete(self.request(leases::DeleteRequest {
                id: id.into(),
                sync: false,
            }))
            .await
            .map_err(|s| StoreError::api("deleting the lease", s))?;
        Ok(())
    }

    /// The content store's record of a blob, if it has it.
    pub async fn info(&self, digest: &str) -> Result<Option<content::Info>, StoreError> {
        match self
            .content()
            .info(self.request(content::InfoRequest {
                digest: digest.into(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(StoreError::api(format!("content info {digest}"), s)),
        }
    }

    async fn set_labels(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), StoreError> {
        if labels.is_empty() {
            return Ok(());
        }
        self.content()
            .update(self.request(content::UpdateRequest {
                info: Some(content::Info {
                    digest: digest.into(),
                    labels: labels.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
                }),
            }))
            .await
            .map_err(|s| StoreError::api(format!("labelling {digest}"), s))?;
        Ok(())
    }

    /// Writes a blob from a file into the content store (or only labels it, if the store
    /// has it already). The digest and size are checked by containerd on commit.
    pub async fn write_blob(
        &self,
        desc: &Descriptor,
        path: &Path,
        labels: HashMap<String, String>,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), StoreError> {
        if self.info(&desc.digest).await?.is_some() {
            bar.inc(desc.size);
            return self.set_labels(&desc.digest, &labels).await;
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| StoreError::file(path, e))?;
        let reference = unique(&format!("ckpt-shim-{}", &desc.digest[7..19]));
        let (tx, rx) = tokio::sync::mpsc::channel::<content::WriteContentRequest>(2);
        let requests =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let base = content::WriteContentRequest {
            r#ref: reference.clone(),
            total: desc.size as i64,
            expected: desc.digest.clone(),
            ..Default::default()
        };
        let closed = |_| StoreError::StreamClosed;
        tx.send(content::WriteContentRequest {
            action: content::WriteAction::Stat as i32,
            ..base.clone()
        })
        .await
        .map_err(closed)?;
        let what = format!("writing {} to containerd", desc.digest);
        let mut answers = match self.content().write(self.request(requests)).await {
            Ok(a) => a.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => {
                return self.set_labels(&desc.digest, &labels).await;
            }
            Err(s) => return Err(StoreError::api(what, s)),
        };
        let mut next = async || -> Result<content::WriteContentResponse, StoreError> {
            match answers.message().await {
                Ok(Some(m)) => Ok(m),
                Ok(None) => Err(StoreError::StreamClosed),
                Err(s) => Err(StoreError::api(what.clone(), s)),
            }
        };
        let stat = match next().await {
            Ok(m) => m,
            Err(e) if e.is_code(Code::AlreadyExists) => {
                return self.set_labels(&desc.digest, &labels).await;
            }
            Err(e) => return Err(e),
        };
        let mut offset = stat.offset.max(0) as u64;
        if offset > 0 {
            use tokio::io::AsyncSeekExt;
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| StoreError::file(path, e))?;
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| StoreError::file(path, e))?;
            if n == 0 {
                break;
            }
            tx.send(content::WriteContentRequest {
                action: content::WriteAction::Write as i32,
                offset: offset as i64,
                data: buf[..n].to_vec(),
                ..base.clone()
            })
            .await
            .map_err(closed)?;
            next().await?;
            offset += n as u64;
            bar.inc(n as u64);
        }
        tx.send(content::WriteContentRequest {
            action: content::WriteAction::Commit as i32,
            // containerd truncates the ingest when a message says offset 0 after data.
            offset: offset as i64,
            labels,
            ..base.clone()
        })
        .await
        .map_err(closed)?;
        let commit = next().await?;
        drop(tx);
        if !commit.digest.is_empty() && commit.digest != desc.digest {
            return Err(StoreError::Committed {
                expected: desc.digest.clone(),
                got: commit.digest,
            });
        }
        Ok(())
    }

    /// Names `target` `name` in the image store (replacing what the name pointed at).
    pub async fn put_image(&self, name: &str, target: &Descriptor) -> Result<(), StoreError> {
        let now = timestamp(SystemTime::now());
        let image = images::Image {
            name: name.into(),
            labels: HashMap::new(),
            target: Some(to_api(target)),
            created_at: Some(now),
            updated_at: Some(now),
        };
        match self
            .images()
            .create(self.request(images::CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                self.images()
                    .update(self.request(images::UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into()],
                        }),
                        source_date_epoch: None,
                    }))
                    .await
                    .map_err(|s| StoreError::api(format!("updating image {name}"), s))?;
                Ok(())
            }
            Err(s) => Err(StoreError::api(format!("creating image {name}"), s)),
        }
    }

    /// Reads a whole blob into memory (index, manifest, config), up to `max` bytes.
    pub async fn read_blob(&self, digest: &str, max: u64) -> Result<Vec<u8>, StoreError> {
        let what = format!("reading {digest} from containerd");
        let mut stream = self
            .content()
            .read(self.request(content::ReadContentRequest {
                digest: digest.into(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|s| StoreError::api(what.clone(), s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| StoreError::api(what.clone(), s))?;
            out.extend_from_slice(&chunk.data);
            if out.len() as u64 > max {
                return Err(StoreError::TooLarge {
                    digest: digest.to_owned(),
                    max,
                });
            }
        }
        if super::sha256_digest(&out) != digest {
            return Err(StoreError::Corrupt {
                digest: digest.to_owned(),
            });
        }
        Ok(out)
    }

    /// Streams a blob into `dest` (created, mode 0600), checking digest and size.
    pub async fn read_blob_to(&self, desc: &Descriptor, dest: &Path) -> Result<(), StoreError> {
        let what = format!("reading {} from containerd", desc.digest);
        let mut stream = self
            .content()
            .read(self.request(content::ReadContentRequest {
                digest: desc.digest.clone(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|s| StoreError::api(what.clone(), s))?
            .into_inner();
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut file = options
            .open(dest)
            .await
            .map_err(|e| StoreError::file(dest, e))?;
        let result = async {
            let mut hash = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|s| StoreError::api(what.clone(), s))?;
                hash.update(&chunk.data);
                size += chunk.data.len() as u64;
                file.write_all(&chunk.data)
                    .await
                    .map_err(|e| StoreError::file(dest, e))?;
            }
            file.flush().await.map_err(|e| StoreError::file(dest, e))?;
            file.sync_all()
                .await
                .map_err(|e| StoreError::file(dest, e))?;
            let got = format!("sha256:{}", hex::encode(hash.finalize()));
            if got != desc.digest || size != desc.size {
                return Err(StoreError::Mismatch {
                    digest: desc.digest.clone(),
                    size,
                    got,
                    expected: desc.size,
                });
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    /// Unpacks a single-layer image's layer into a committed snapshot named by its chain
    /// id (= the layer's diff id), the way a pull unpacks, and labels the config blob so
    /// the snapshot lives as long as the image. Returns the chain id.
    pub async fn unpack(
        &self,
        snapshotter: &str,
        layer: &Descriptor,
        diff_id: &str,
        config: &Descriptor,
    ) -> Result<String, StoreError> {
        let chain_id = diff_id.to_owned();
        let mut snaps =
            snapshots::snapshots_client::SnapshotsClient::new(self.containerd.channel().clone());
        let exists = snaps
            .stat(self.request(snapshots::StatSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: chain_id.clone(),
            }))
            .await
            .is_ok();
        if !exists {
            let key = unique("ckpt-shim-unpack");
            let mounts = snaps
                .prepare(self.request(snapshots::PrepareSnapshotRequest {
                    snapshotter: snapshotter.into(),
                    key: key.clone(),
                    parent: String::new(),
                    labels: HashMap::new(),
                }))
                .await
                .map_err(|s| StoreError::api("preparing a snapshot", s))?
                .into_inner()
                .mounts;
            let applied = diff::diff_client::DiffClient::new(self.containerd.channel().clone())
                .apply(self.request(diff::ApplyRequest {
                    diff: Some(to_api(layer)),
                    mounts,
                    payloads: HashMap::new(),
                    sync_fs: false,
                }))
                .await;
            let applied = match applied {
                Ok(a) => a.into_inner().applied,
                Err(s) => {
                    let _ = snaps
                        .remove(self.request(snapshots::RemoveSnapshotRequest {
                            snapshotter: snapshotter.into(),
                            key: key.clone(),
                        }))
                        .await;
                    return Err(StoreError::api("applying the layer", s));
                }
            };
            if let Some(a) = applied.filter(|a| a.digest != diff_id) {
                return Err(StoreError::DiffId {
                    got: a.digest,
                    expected: diff_id.to_owned(),
                });
            }
            match snaps
                .commit(self.request(snapshots::CommitSnapshotRequest {
                    snapshotter: snapshotter.into(),
                    name: chain_id.clone(),
                    key: key.clone(),
                    labels: HashMap::new(),
                }))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::AlreadyExists => {
                    let _ = snaps
                        .remove(self.request(snapshots::RemoveSnapshotRequest {
                            snapshotter: snapshotter.into(),
                            key,
                        }))
                        .await;
                }
                Err(s) => return Err(StoreError::api("committing the snapshot", s)),
            }
        }
        self.set_labels(
            &config.digest,
            &HashMap::from([(
                format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
                chain_id.clone(),
            )]),
        )
        .await?;
        Ok(chain_id)
    }
}

/// Puts a built image into containerd's stores as `built.name` and, with `snapshotter`,
/// unpacks it there. Blobs go in under a lease so garbage collection cannot take them
/// before the image names them; the `gc.ref` labels keep them once it does.
pub async fn import(
    containerd: Containerd,
    built: &Built,
    snapshotter: Option<&str>,
    bar: &indicatif::ProgressBar,
) -> Result<(), StoreError> {
    let mut store = Store::new(containerd);
    let lease = store.begin_lease().await?;
    let result = async {
        let labels: [HashMap<String, String>; 4] = [
            HashMap::new(),
            HashMap::new(),
            HashMap::from([
                (
                    "containerd.io/gc.ref.content.config".into(),
                    built.config.digest.clone(),
                ),
                (
                    "containerd.io/gc.ref.content.l.0".into(),
                    built.layer.digest.clone(),
                ),
            ]),
            HashMap::from([(
                "containerd.io/gc.ref.content.m.0".into(),
                built.manifest.digest.clone(),
            )]),
        ];
        for (desc, labels) in built.blobs().into_iter().zip(labels) {
            let path = built.blob_path(&desc.digest)?;
            store.write_blob(desc, &path, labels, bar).await?;
        }
        store
            .put_image(&built.name.to_string(), &built.index)
            .await?;
        if let Some(s) = snapshotter {
            store
                .unpack(s, &built.layer, &built.layer.digest, &built.config)
                .await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    let ended = store.end_lease(&lease).await;
    result.and(ended)
}

/// A checkpoint image found in containerd's image store.
#[derive(Clone)]
pub struct CheckpointImage {
    /// The image's name in the store.
    pub name: String,
    pub manifest_digest: String,
    /// Index annotations overlaid with the manifest's (all schemes, as found).
    pub annotations: BTreeMap<String, String>,
    pub layers: Vec<Descriptor>,
    store: Store,
}

impl std::fmt::Debug for CheckpointImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointImage")
            .field("name", &self.name)
            .field("manifest_digest", &self.manifest_digest)
            .field("annotations", &self.annotations)
            .field("layers", &self.layers)
            .finish()
    }
}

impl CheckpointImage {
    /// The container name the image was checkpointed from (first scheme that has one).
    pub fn container_name(&self) -> Option<&str> {
        super::CHECKPOINT_NAME_KEYS
            .iter()
            .find_map(|k| self.annotations.get(*k).filter(|v| !v.is_empty()))
            .map(String::as_str)
    }

    /// Streams the single layer blob from the content store into `dest` (a new file,
    /// mode 0600), checking its digest and size. The layer is a tar, plain or compressed
    /// as its media type says; open it as a checkpoint archive.
    pub async fn fetch_layer(&self, dest: &Path) -> Result<(), StoreError> {
        let layer = match self.layers.as_slice() {
            [one] => one,
            more => {
                return Err(StoreError::Layers {
                    name: self.name.clone(),
                    count: more.len(),
                })
            }
        };
        self.store.read_blob_to(layer, dest).await
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == super::MEDIA_INDEX || media_type == super::MEDIA_DOCKER_LIST
}

/// From an index, the manifest for this host (or the only one).
fn pick_manifest(index: &Manifest) -> Option<&Descriptor> {
    let host = Platform::host();
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !is_index(&d.media_type))
        .collect();
    candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == host.os && p.architecture == host.architecture)
        })
        .or_else(|| candidates.iter().find(|d| d.platform.is_none()))
        .or(if candidates.len() == 1 {
            candidates.first()
        } else {
            None
        })
        .copied()
}

struct Resolved {
    index_annotations: BTreeMap<String, String>,
    manifest_digest: String,
    manifest: Manifest,
}

async fn resolve(store: &Store, target: &Descriptor) -> Result<Resolved, StoreError> {
    let raw = store.read_blob(&target.digest, MAX_JSON_BLOB).await?;
    let top: Manifest = serde_json::from_slice(&raw).map_err(|error| StoreError::NotJson {
        digest: target.digest.clone(),
        what: "index or manifest",
        error,
    })?;
    let top_is_index = is_index(&target.media_type)
        || top.media_type == super::MEDIA_INDEX
        || (top.config.is_none() && !top.manifests.is_empty());
    if !top_is_index {
        return Ok(Resolved {
            index_annotations: BTreeMap::new(),
            manifest_digest: target.digest.clone(),
            manifest: top,
        });
    }
    let chosen = pick_manifest(&top)
        .ok_or_else(|| StoreError::NoManifest(target.digest.clone()))?
        .clone();
    let raw = store.read_blob(&chosen.digest, MAX_JSON_BLOB).await?;
    let manifest: Manifest = serde_json::from_slice(&raw).map_err(|error| StoreError::NotJson {
        digest: chosen.digest.clone(),
        what: "manifest",
        error,
    })?;
    Ok(Resolved {
        index_annotations: top.annotations,
        manifest_digest: chosen.digest,
        manifest,
    })
}

/// Finds `image_ref` (a name as given or normalised, or an image id `sha256:...` matching
/// an image's target or config) in containerd's image store and tells whether it is a
/// checkpoint image: `Ok(None)` when it carries no checkpoint annotation of any scheme
/// (CRI-O's or Podman's on the manifest, checkpointctl's/containerd's on the index,
/// ckpt-shim's on either), and also when the store has no such image. Unreadable blobs and
/// an unreachable containerd API are errors.
pub async fn checkpoint_image(
    containerd: &Containerd,
    image_ref: &str,
) -> Result<Option<CheckpointImage>, StoreError> {
    let store = Store::new(containerd.clone());
    // Not in the store: not a checkpoint image here; a proxy relays the call unchanged
    // and the runtime answers with its own NotFound.
    let Some((name, target)) = find(&store, image_ref).await? else {
        return Ok(None);
    };
    let resolved = resolve(&store, &target).await?;
    let mut annotations = resolved.index_annotations;
    annotations.extend(resolved.manifest.annotations.clone());
    if !super::is_checkpoint(&annotations) {
        return Ok(None);
    }
    // A checkpoint image with more than one layer is still one: `fetch_layer` refuses it
    // with the reason, so a restore fails instead of the image running as an ordinary one.
    let layers = resolved.manifest.layers.clone();
    Ok(Some(CheckpointImage {
        name,
        manifest_digest: resolved.manifest_digest,
        annotations,
        layers,
        store,
    }))
}

async fn get_image(store: &Store, name: &str) -> Result<Option<images::Image>, StoreError> {
    match store
        .images()
        .get(store.request(images::GetImageRequest { name: name.into() }))
        .await
    {
        Ok(r) => Ok(r.into_inner().image),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(StoreError::api(format!("looking up image {name}"), s)),
    }
}

async fn find(store: &Store, image_ref: &str) -> Result<Option<(String, Descriptor)>, StoreError> {
    let mut names = vec![image_ref.to_owned()];
    if let Ok(r) = super::Reference::parse(image_ref) {
        names.push(r.to_string());
    }
    for name in &names {
        if let Some(image) = get_image(store, name).await? {
            if let Some(t) = &image.target {
                return Ok(Some((image.name, from_api(t))));
            }
        }
    }
    // An image id: the target's digest, or (what CRI calls an image's id) its config's.
    let id = image_ref.strip_prefix("sha256:").map(|_| image_ref);
    let Some(id) = id else {
        return Ok(None);
    };
    super::digest_hex(id)?;
    let all = store
        .images()
        .list(store.request(images::ListImagesRequest { filters: vec![] }))
        .await
        .map_err(|s| StoreError::api("listing images", s))?
        .into_inner()
        .images;
    let with_target: Vec<(String, Descriptor)> = all
        .into_iter()
        .filter_map(|i| i.target.as_ref().map(|t| (i.name.clone(), from_api(t))))
        .collect();
    if let Some(hit) = with_target.iter().find(|(_, t)| t.digest == id) {
        return Ok(Some(hit.clone()));
    }
    for (name, target) in with_target {
        let Ok(resolved) = resolve(store, &target).await else {
            continue;
        };
        if resolved
            .manifest
            .config
            .as_ref()
            .is_some_and(|c| c.digest == id)
        {
            return Ok(Some((name, target)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(digest: &str, platform: Option<(&str, &str)>) -> Descriptor {
        Descriptor {
            media_type: crate::image::MEDIA_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            annotations: BTreeMap::new(),
            platform: platform.map(|(os, arch)| Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: None,
            }),
        }
    }

    #[test]
    fn picks_the_host_manifest() {
        let host = Platform::host();
        let index = Manifest {
            manifests: vec![
                desc("a", Some(("linux", "s390x-nope"))),
                desc("b", Some((&host.os, &host.architecture))),
            ],
            ..Default::default()
        };
        assert_eq!(pick_manifest(&index).unwrap().digest, "b");
        let single = Manifest {
            manifests: vec![desc("c", Some(("windows", "amd64")))],
            ..Default::default()
        };
        assert_eq!(pick_manifest(&single).unwrap().digest, "c");
        let none = Manifest {
            manifests: vec![
                desc("a", Some(("linux", "x1"))),
                desc("b", Some(("linux", "x2"))),
            ],
            ..Default::default()
        };
        assert!(pick_manifest(&none).is_none());
    }

    #[test]
    fn errors_read_as_before() {
        // restore puts these into its gRPC status message as they are.
        let layers = StoreError::Layers {
            name: "localhost/x:1".into(),
            count: 2,
        };
        assert_eq!(
            layers.to_string(),
            "checkpoint image localhost/x:1 has 2 layers; a checkpoint image has exactly one"
        );
        let api = StoreError::api(
            "looking up image x",
            tonic::Status::unavailable("connection refused"),
        );
        assert_eq!(
            api.to_string(),
            "looking up image x: Unavailable: connection refused"
        );
        assert!(api.is_code(Code::Unavailable));
        assert!(!layers.is_code(Code::Unavailable));
    }
}
