//! The proxy against the in-process fake runtime: transparency (same bytes directly and
//! through the shim), failure handling, bad input, and the daemon's life cycle.

mod bad_input;
mod differential;
mod lifecycle;
mod runtime_down;

use std::path::PathBuf;

use bytes::Bytes;
use ckpt_shim_tests::fake_runtime::FakeRuntime;
use ckpt_shim_tests::raw::{RawClient, RawResponse};
use ckpt_shim_tests::shim::{Options, Shim};

/// A fake runtime and a shim in front of it, in a private directory.
pub struct Bed {
    pub dir: tempfile::TempDir,
    pub fake: Option<FakeRuntime>,
    pub shim: Shim,
}

impl Bed {
    pub async fn new() -> Bed {
        Self::with(Options::default()).await
    }

    pub async fn with(options: Options) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeRuntime::start(&dir.path().join("runtime.sock")).await;
        let shim = Shim::start(dir.path(), &fake.socket, options).await;
        Bed {
            dir,
            fake: Some(fake),
            shim,
        }
    }

    pub fn runtime_socket(&self) -> PathBuf {
        self.dir.path().join("runtime.sock")
    }

    pub fn fake(&self) -> &FakeRuntime {
        self.fake.as_ref().unwrap()
    }

    pub async fn direct(&self) -> RawClient {
        RawClient::connect(&self.runtime_socket()).await.unwrap()
    }

    pub async fn via_shim(&self) -> RawClient {
        RawClient::connect(&self.shim.socket).await.unwrap()
    }

    /// The same call, once straight to the runtime and once through the shim.
    pub async fn both(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> (RawResponse, RawResponse) {
        let direct = self
            .direct()
            .await
            .call(path, headers, body.clone())
            .await
            .unwrap();
        let shimmed = self
            .via_shim()
            .await
            .call(path, headers, body)
            .await
            .unwrap();
        (without_date(direct), without_date(shimmed))
    }
}

/// The runtime stamps each answer with the current second (hyper's `date` header), so two
/// calls made across a second boundary differ there and nowhere else. The shim relays the
/// runtime's header; the test only checks that one is present, then compares the rest.
fn without_date(mut r: RawResponse) -> RawResponse {
    assert!(
        r.headers.remove("date").is_some(),
        "the runtime's date header is relayed"
    );
    r
}
