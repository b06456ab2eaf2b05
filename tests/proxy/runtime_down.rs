//! The runtime goes away and comes back: calls fail fast with UNAVAILABLE, and the shim
//! reconnects by itself.

use std::time::{Duration, Instant};

use ckpt_shim::api::cri;
use ckpt_shim::api::cri::runtime_service_client::RuntimeServiceClient;
use ckpt_shim_tests::fake_runtime::FakeRuntime;
use ckpt_shim_tests::raw::lazy_channel;
use ckpt_shim_tests::shim::{Options, Shim};

async fn version(
    client: &mut RuntimeServiceClient<tonic::transport::Channel>,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(cri::VersionRequest::default());
    request.set_timeout(Duration::from_secs(30));
    client.version(request).await.map(|_| ())
}

async fn expect_unavailable_fast(client: &mut RuntimeServiceClient<tonic::transport::Channel>) {
    let started = Instant::now();
    let err = version(client).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("ckpt-shim"),
        "the shim says it is the one answering: {}",
        err.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "UNAVAILABLE must come at once, not at the 30 s deadline: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn runtime_down_then_back_without_restarting_the_shim() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.sock");
    // The shim starts before the runtime exists, as after a node reboot.
    let shim = Shim::start(dir.path(), &runtime, Options::default()).await;
    let mut client = RuntimeServiceClient::new(lazy_channel(&shim.socket));
    expect_unavailable_fast(&mut client).await;

    let fake = FakeRuntime::start(&runtime).await;
    version(&mut client)
        .await
        .expect("runtime is back: the call succeeds");

    // The runtime dies with the shim's connection open.
    fake.stop().await;
    expect_unavailable_fast(&mut client).await;
    expect_unavailable_fast(&mut client).await;

    let fake = FakeRuntime::start(&runtime).await;
    version(&mut client)
        .await
        .expect("reconnected after the runtime restarted");
    version(&mut client).await.unwrap();
    fake.stop().await;
    assert!(
        shim.logs().contains("runtime connection"),
        "the loss is logged"
    );
}

#[tokio::test]
async fn a_call_in_flight_when_the_runtime_dies_gets_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("runtime.sock");
    let fake = FakeRuntime::start(&runtime).await;
    let shim = Shim::start(dir.path(), &runtime, Options::default()).await;
    let mut client = RuntimeServiceClient::new(lazy_channel(&shim.socket));
    let call = tokio::spawn(async move {
        let mut request = tonic::Request::new(cri::VersionRequest::default());
        request
            .metadata_mut()
            .insert("fake-delay-ms", "10000".parse().unwrap());
        client.version(request).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    fake.stop().await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
