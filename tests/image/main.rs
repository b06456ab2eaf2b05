//! Checkpoint images on the real test bed: `ckpt-shim image build --import` into
//! containerd 1.6 (found through CRI ImageStatus and `image::checkpoint_image`, by name and
//! by id), `--push` to the bed's registry and back through CRI PullImage, and the layer
//! fetched from the content store holding the archive's members byte for byte; on
//! containerd 2.1, a container restored from a checkpoint image (imported, and pushed and
//! pulled); and a push to an in-process registry with bearer-token auth (no root needed).
//! Root only; skipped with a printed reason otherwise (`CKPT_E2E=1` makes that an error).

use ckpt_shim::runtime::containerd::Containerd;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_shim::api::cri::image_service_client::ImageServiceClient;
use ckpt_shim::api::cri::{ImageSpec, ImageStatusRequest, PullImageRequest, RemoveImageRequest};
use ckpt_shim::image::{checkpoint_image, CheckpointImage, CRIO_NAME, CRIU_NAME};
use ckpt_shim_tests::bed;
use ckpt_shim_tests::testbed::{say, skip, Instance};
use tonic::transport::Channel;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shim/tests/fixtures")
        .join(name)
}

/// Member name -> bytes (None for directories) of a tar, plain or gzip.
fn members(path: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut data = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    let reader: Box<dyn Read> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(&data[..]))
    } else {
        Box::new(&data[..])
    };
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let name = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        let body = if e.header().entry_type().is_dir() {
            None
        } else {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            Some(b)
        };
        out.insert(name, body);
    }
    out
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(ckpt_shim_tests::shim::binary())
        .arg("image")
        .arg("build")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ckpt-shim image build {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    say(String::from_utf8_lossy(&out.stderr).trim_end());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn image_id(images: &mut ImageServiceClient<Channel>, name: &str) -> Option<String> {
    images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .map(|i| i.id)
}

async fn layer_matches(image: &CheckpointImage, archive: &Path, scratch: &Path, tag: &str) {
    let dest = scratch.join(format!("layer-{tag}.tar"));
    image.fetch_layer(&dest).await.unwrap();
    let got = members(&dest);
    let want = members(archive);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "members of the fetched layer"
    );
    assert!(got == want, "member bytes differ");
    say(&format!(
        "{tag}: fetch_layer gave {} members, {} bytes, identical to {}",
        got.len(),
        std::fs::metadata(&dest).unwrap().len(),
        archive.display()
    ));
    // A second fetch never overwrites.
    assert!(image.fetch_layer(&dest).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn import_and_push_on_containerd_1_6() {
    if skip("image import/push on 1.6-img") {
        return;
    }
    let bed = Instance::up("1.6-img").unwrap();
    let scratch = tempfile::Builder::new()
        .prefix("ckpt-image-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let archive = fixture("shim-1.6-suspect.tar.gz");
    let channel = ckpt_shim_tests::raw::channel(&bed.socket).await.unwrap();
    let containerd = Containerd::new(channel.clone(), "k8s.io").unwrap();
    let mut images = ImageServiceClient::new(channel.clone());
    let unique = std::process::id();

    // --import (with the layout kept, to compare digests).
    let name = format!("localhost:5000/ckpt-shim-test/suspect:import-{unique}");
    let layout = scratch.path().join("layout");
    let out = cli(&[
        archive.to_str().unwrap(),
        &name,
        "--output",
        layout.to_str().unwrap(),
        "--import",
        "--containerd",
        &format!("unix://{}", bed.socket.display()),
    ]);
    let printed: Vec<&str> = out.lines().collect();
    assert_eq!(printed[0], layout.display().to_string());
    let index_digest = printed[1].rsplit_once('@').unwrap().1.to_owned();
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&index_digest[7..])).unwrap(),
    )
    .unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&manifest_digest[7..])).unwrap(),
    )
    .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();

    // CRI sees it (its id is the config digest).
    let id = image_id(&mut images, &name).await;
    assert_eq!(
        id.as_deref(),
        Some(config_digest.as_str()),
        "CRI ImageStatus"
    );
    say(&format!("1.6: CRI ImageStatus {name} -> {config_digest}"));

    // The restore path's lookup, by name and by id; a plain image is not one.
    let found = checkpoint_image(&containerd, &name)
        .await
        .unwrap()
        .expect("a checkpoint image");
    assert_eq!(found.name, name);
    assert_eq!(found.manifest_digest, manifest_digest);
    assert_eq!(found.annotations[CRIU_NAME], "suspect");
    assert_eq!(found.annotations[CRIO_NAME], "suspect");
    assert_eq!(found.container_name(), Some("suspect"));
    assert_eq!(found.layers.len(), 1);
    let by_id = checkpoint_image(&containerd, &config_digest)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(by_id.manifest_digest, manifest_digest);
    let busybox = bed.get("BUSYBOX_IMAGE").to_owned();
    assert!(checkpoint_image(&containerd, &busybox)
        .await
        .unwrap()
        .is_none());
    assert!(checkpoint_image(&containerd, "localhost/no/such:image")
        .await
        .unwrap()
        .is_none());
    layer_matches(&found, &archive, scratch.path(), "import").await;

    // A checkpoint image with two layers is refused, saying why.
    let two_layers = format!("localhost/ckpt-shim-test/two-layers:{unique}");
    {
        let mut m = manifest.clone();
        let layer = m["layers"][0].clone();
        m["layers"] = serde_json::json!([layer.clone(), layer]);
        m["annotations"] = serde_json::json!({ CRIU_NAME: "suspect" });
        let bytes = serde_json::to_vec(&m).unwrap();
        let path = scratch.path().join("two-layers.json");
        std::fs::write(&path, &bytes).unwrap();
        let desc = ckpt_shim::image::Descriptor {
            media_type: ckpt_shim::image::MEDIA_MANIFEST.into(),
            digest: ckpt_shim::image::sha256_digest(&bytes),
            size: bytes.len() as u64,
            annotations: Default::default(),
            platform: None,
        };
        let store = ckpt_shim::image::store::Store::new(containerd.clone());
        store
            .write_blob(
                &desc,
                &path,
                Default::default(),
                &indicatif::ProgressBar::hidden(),
            )
            .await
            .unwrap();
        store.put_image(&two_layers, &desc).await.unwrap();
        // Found as a checkpoint image (so a restore is refused with the reason rather than
        // the image run as an ordinary one), but its layer cannot be taken.
        let image = checkpoint_image(&containerd, &two_layers)
            .await
            .unwrap()
            .expect("a checkpoint image");
        let e = image
            .fetch_layer(&scratch.path().join("never"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("has 2 layers"), "{e}");
    }

    // --push, then CRI PullImage on the bed, and the pulled image is a checkpoint image.
    let pushed_name = format!("127.0.0.1:5000/ckpt-shim-test/suspect:push-{unique}");
    let out = cli(&[
        archive.to_str().unwrap(),
        &pushed_name,
        "--push",
        "--plain-http",
    ]);
    assert!(
        out.trim().ends_with(&index_digest),
        "the pushed index is the one built: {out}"
    );
    // No layout is left behind without --output.
    assert!(!Path::new(&format!(
        "127.0.0.1_5000_ckpt-shim-test_suspect_push-{unique}.oci"
    ))
    .exists());
    let pulled = images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: pushed_name.clone(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(pulled, config_digest, "PullImage gives the same image id");
    assert_eq!(
        image_id(&mut images, &pushed_name).await.as_deref(),
        Some(config_digest.as_str())
    );
    let from_registry = checkpoint_image(&containerd, &pushed_name)
        .await
        .unwrap()
        .expect("the pulled image is a checkpoint image");
    assert_eq!(from_registry.manifest_digest, manifest_digest);
    assert_eq!(from_registry.annotations, found.annotations);
    say(&format!(
        "1.6: pushed and pulled {pushed_name} (index {index_digest}, {} annotations)",
        from_registry.annotations.len()
    ));
    layer_matches(&from_registry, &archive, scratch.path(), "pull").await;

    for n in [&name, &pushed_name, &two_layers] {
        let _ = images
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: n.to_string(),
                    ..Default::default()
                }),
            })
            .await;
    }
    bed.down().unwrap();
}

const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; done";

/// The whole migration path on containerd 2.1: checkpoint a running counter through CRI,
/// `image build --push` the archive, pull it through CRI, and create + start a container
/// from the checkpoint image in a new pod. containerd finds the image by its index
/// annotation and restores: the counter goes on from where it was.
#[tokio::test(flavor = "multi_thread")]
async fn restore_from_pushed_image_on_containerd_2_1() {
    use ckpt_shim::api::cri::*;
    use std::time::Duration;
    if skip("image restore on 2.1-img") {
        return;
    }
    let b = bed::Bed::up("2.1-img");
    let scratch = tempfile::Builder::new()
        .prefix("ckpt-image-test-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut cri = bed::cri(&b.socket).await;
    let channel = ckpt_shim_tests::raw::channel(&b.socket).await.unwrap();
    let containerd = Containerd::new(channel.clone(), "k8s.io").unwrap();
    let mut images = ImageServiceClient::new(channel.clone());

    // containerd 2.1 records the base image as CRI's ImageRef, which is the bare image id
    // for the bed's imported busybox, and its restore then fails to pull "sha256:...".
    // Pulled once through CRI, the image has a repo digest, and the restore can pull that.
    images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: b.var("BUSYBOX_IMAGE").into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap();
    let first = bed::pod(&mut cri, &b, "image-src", "ckpt-image").await;
    let (id, log) = bed::container(&mut cri, &b, &first, "counter", COUNTER, &[]).await;
    bed::wait_for("5 counter lines", Duration::from_secs(10), || {
        bed::counts(&log).len() >= 5
    })
    .await;
    let archive = scratch.path().join("counter.tar");
    bed::checkpoint(&mut cri, &id, &archive, 60)
        .await
        .expect("CRI checkpoint on 2.1");
    let at_checkpoint = *bed::counts(&log).last().unwrap();
    bed::remove_pod(&mut cri, &first).await;

    // Imported first: no pull has unpacked this layer yet, so the restore needs the
    // snapshot --import unpacks (without it: "parent snapshot sha256:... does not exist").
    let imported = format!(
        "localhost/ckpt-shim-test/counter:import-{}",
        std::process::id()
    );
    cli(&[
        archive.to_str().unwrap(),
        &imported,
        "--import",
        "--containerd",
        &format!("unix://{}", b.socket.display()),
    ]);
    restore_in_new_pod(&mut cri, &b, "image-dst-import", &imported, at_checkpoint).await;

    let name = format!(
        "127.0.0.1:5000/ckpt-shim-test/counter:restore-{}",
        std::process::id()
    );
    cli(&[archive.to_str().unwrap(), &name, "--push", "--plain-http"]);
    images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap();
    assert!(checkpoint_image(&containerd, &name)
        .await
        .unwrap()
        .is_some());

    // Pushed, then pulled through CRI (which unpacks).
    restore_in_new_pod(&mut cri, &b, "image-dst-pull", &name, at_checkpoint).await;

    for n in [name, imported] {
        let _ = images
            .remove_image(RemoveImageRequest {
                image: Some(ImageSpec {
                    image: n,
                    ..Default::default()
                }),
            })
            .await;
    }
}

/// Creates and starts a container from checkpoint image `name` in a new pod and checks
/// that the counter goes on past `at_checkpoint`.
async fn restore_in_new_pod(
    cri: &mut bed::Cri,
    b: &bed::Bed,
    pod_name: &str,
    name: &str,
    at_checkpoint: u64,
) {
    use ckpt_shim::api::cri::*;
    use std::time::Duration;
    let second = bed::pod(cri, b, pod_name, "ckpt-image").await;
    let created = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: second.id.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "counter".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: name.to_owned(),
                    ..Default::default()
                }),
                log_path: "counter.log".into(),
                linux: Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext::default()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(second.config.clone()),
        })
        .await;
    let restored = match created {
        Ok(r) => r.into_inner().container_id,
        Err(s) => {
            let log = std::fs::read_to_string(b.var("CONTAINERD_LOG")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "CreateContainer from the checkpoint image: {s:?}\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    cri.start_container(StartContainerRequest {
        container_id: restored.clone(),
    })
    .await
    .expect("StartContainer restores");
    let new_log = second.log_dir.join("counter.log");
    bed::wait_for(
        "the restored counter to go on",
        Duration::from_secs(15),
        || {
            bed::counts(&new_log)
                .last()
                .is_some_and(|n| *n > at_checkpoint + 5)
        },
    )
    .await;
    let counts = bed::counts(&new_log);
    // The archive's copy of the log may end a line or two after the dump (the original
    // kept running), so the restored counter can repeat those; it must never start over.
    assert_eq!(
        counts.iter().filter(|n| **n == 1).count(),
        1,
        "the counter never starts again from 1: {counts:?}"
    );
    say(&format!(
        "2.1: restored from {name}: counter at {at_checkpoint} when checkpointed, {} now",
        counts.last().unwrap()
    ));
    bed::remove_pod(cri, &second).await;
}

/// A registry that wants a bearer token from its token service, which wants basic auth:
/// enough of the distribution API to see what a push sends. No root needed.
mod fake_registry {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use sha2::{Digest, Sha256};

    pub const TOKEN: &str = "tok-123";

    #[derive(Default)]
    pub struct State {
        pub port: u16,
        pub scopes: Vec<String>,
        pub blobs: HashMap<String, Vec<u8>>,
        /// reference -> (content type, bytes)
        pub manifests: HashMap<String, (String, Vec<u8>)>,
        pub unauthorized: usize,
        uploads: usize,
    }

    fn reply(
        status: StatusCode,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Response<Full<Bytes>> {
        let mut r = Response::builder().status(status);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.body(Full::new(Bytes::from(body))).unwrap()
    }

    async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        let auth = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let path = parts.uri.path().to_owned();
        let query: HashMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            })
            .collect();
        let mut s = state.lock().unwrap();
        if path == "/token" {
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
            );
            if auth != basic || query.get("service").map(String::as_str) != Some("fake") {
                return reply(StatusCode::UNAUTHORIZED, &[], b"bad credentials".to_vec());
            }
            s.scopes.push(query["scope"].clone());
            return reply(
                StatusCode::OK,
                &[],
                format!("{{\"token\":\"{TOKEN}\"}}").into_bytes(),
            );
        }
        if auth != format!("Bearer {TOKEN}") {
            s.unauthorized += 1;
            let challenge = format!(
                "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"fake\"",
                s.port
            );
            return reply(
                StatusCode::UNAUTHORIZED,
                &[("www-authenticate", challenge)],
                Vec::new(),
            );
        }
        let method = parts.method.as_str();
        if path == "/v2/" {
            return reply(StatusCode::OK, &[], Vec::new());
        }
        if let Some(n) = path.strip_prefix("/upload/") {
            assert_eq!(method, "PUT");
            let digest = query["digest"].clone();
            let got = format!("sha256:{:x}", Sha256::digest(&body));
            assert_eq!(got, digest, "upload {n}: body does not match its digest");
            s.blobs.insert(digest, body);
            return reply(StatusCode::CREATED, &[], Vec::new());
        }
        let rest = path.strip_prefix("/v2/ckpt/x/").expect("repository ckpt/x");
        if let Some(digest) = rest.strip_prefix("blobs/") {
            if digest == "uploads/" {
                assert_eq!(method, "POST");
                s.uploads += 1;
                let location = format!("/upload/{}", s.uploads);
                return reply(StatusCode::ACCEPTED, &[("location", location)], Vec::new());
            }
            assert_eq!(method, "HEAD");
            let status = if s.blobs.contains_key(digest) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            return reply(status, &[], Vec::new());
        }
        if let Some(reference) = rest.strip_prefix("manifests/") {
            assert_eq!(method, "PUT");
            let media = parts.headers["content-type"].to_str().unwrap().to_owned();
            let digest = format!("sha256:{:x}", Sha256::digest(&body));
            s.manifests.insert(reference.to_owned(), (media, body));
            return reply(
                StatusCode::CREATED,
                &[("docker-content-digest", digest)],
                Vec::new(),
            );
        }
        reply(StatusCode::NOT_FOUND, &[], Vec::new())
    }

    pub async fn start() -> Arc<Mutex<State>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(Mutex::new(State {
            port: listener.local_addr().unwrap().port(),
            ..Default::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        state
    }
}

#[tokio::test]
async fn push_with_a_bearer_token_to_a_fake_registry() {
    use ckpt_shim::image::push::{push, PushOptions};
    let registry = fake_registry::start().await;
    let port = registry.lock().unwrap().port;
    let scratch = tempfile::tempdir().unwrap();
    let name = ckpt_shim::image::Reference::parse(&format!("127.0.0.1:{port}/ckpt/x:v1")).unwrap();
    let built = ckpt_shim::image::layout::build(
        &fixture("containerd-2.1-suspect.tar.gz"),
        &name,
        &scratch.path().join("x.oci"),
        false,
    )
    .unwrap();
    let options = |password: &str| PushOptions {
        plain_http: true,
        username: Some("alice".into()),
        password: Some(password.into()),
    };
    let bar = indicatif::ProgressBar::hidden();

    // Wrong password: the token service refuses, and the push says so.
    let e = push(&built, &name, options("wrong"), &bar)
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("token service refused"), "{e:#}");

    let pushed = push(&built, &name, options("s3cret"), &bar).await.unwrap();
    assert_eq!(pushed.reference, format!("{name}@{}", built.index.digest));
    assert_eq!((pushed.blobs_uploaded, pushed.blobs_present), (2, 0));
    {
        let s = registry.lock().unwrap();
        assert_eq!(s.scopes.last().unwrap(), "repository:ckpt/x:pull,push");
        for d in [&built.layer, &built.config] {
            let stored = &s.blobs[&d.digest];
            assert_eq!(stored.len() as u64, d.size);
            assert_eq!(
                stored,
                &std::fs::read(built.blob_path(&d.digest).unwrap()).unwrap()
            );
        }
        let (media, manifest) = &s.manifests[&built.manifest.digest];
        assert_eq!(media, ckpt_shim::image::MEDIA_MANIFEST);
        assert_eq!(
            manifest,
            &std::fs::read(built.blob_path(&built.manifest.digest).unwrap()).unwrap()
        );
        let (media, index) = &s.manifests["v1"];
        assert_eq!(media, ckpt_shim::image::MEDIA_INDEX);
        assert_eq!(
            index,
            &std::fs::read(built.blob_path(&built.index.digest).unwrap()).unwrap()
        );
    }
    // Again: the blobs are there already and are not sent twice.
    let again = push(&built, &name, options("s3cret"), &bar).await.unwrap();
    assert_eq!((again.blobs_uploaded, again.blobs_present), (0, 2));
}
