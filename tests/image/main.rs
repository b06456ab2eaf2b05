//! Checkpoint images on the real test bed: `ckpt-shim image build --import` into
//! containerd 1.6 (found through CRI ImageStatus and `image::checkpoint_image`, by name and
//! by id), `--push` to the bed's registry and back through CRI PullImage, and the layer
//! fetched from the content store holding the archive's members byte for byte.
//! Root only; skipped with a printed reason otherwise (`CKPT_E2E=1` makes that an error).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use ckpt_shim::api::cri::image_service_client::ImageServiceClient;
use ckpt_shim::api::cri::{ImageSpec, ImageStatusRequest, PullImageRequest, RemoveImageRequest};
use ckpt_shim::image::{checkpoint_image, CheckpointImage, CRIO_NAME, CRIU_NAME};
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
    let found = checkpoint_image(&channel, "k8s.io", &name)
        .await
        .unwrap()
        .expect("a checkpoint image");
    assert_eq!(found.name, name);
    assert_eq!(found.manifest_digest, manifest_digest);
    assert_eq!(found.annotations[CRIU_NAME], "suspect");
    assert_eq!(found.annotations[CRIO_NAME], "suspect");
    assert_eq!(found.container_name(), Some("suspect"));
    assert_eq!(found.layers.len(), 1);
    let by_id = checkpoint_image(&channel, "k8s.io", &config_digest)
        .await
        .unwrap()
        .expect("found by id");
    assert_eq!(by_id.manifest_digest, manifest_digest);
    let busybox = bed.get("BUSYBOX_IMAGE").to_owned();
    assert!(checkpoint_image(&channel, "k8s.io", &busybox)
        .await
        .unwrap()
        .is_none());
    assert!(
        checkpoint_image(&channel, "k8s.io", "localhost/no/such:image")
            .await
            .is_err()
    );
    layer_matches(&found, &archive, scratch.path(), "import").await;

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
    let from_registry = checkpoint_image(&channel, "k8s.io", &pushed_name)
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

    for n in [&name, &pushed_name] {
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
