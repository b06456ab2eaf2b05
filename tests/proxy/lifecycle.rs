//! The daemon as a node admin meets it: socket permissions, stale sockets, a second
//! instance, config errors, graceful stop, systemd readiness.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use ckpt_shim::api::cri;
use ckpt_shim_tests::raw::{encode, RawClient};
use ckpt_shim_tests::shim::{binary, Options, Shim};

use crate::Bed;

#[tokio::test]
async fn socket_has_the_configured_mode_and_group() {
    let bed = Bed::with(Options {
        server: "socket_mode = \"0660\"\nsocket_group = \"12345\"".into(),
        ..Default::default()
    })
    .await;
    let meta = std::fs::metadata(&bed.shim.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 12345);
    assert_eq!(meta.uid(), 0);
}

#[tokio::test]
async fn a_stale_socket_is_replaced_and_a_live_one_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("shim.sock");
    // A socket file nobody listens on, as a crashed run leaves.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let runtime = dir.path().join("runtime.sock");
    let shim = Shim::start(dir.path(), &runtime, Options::default()).await;
    assert!(shim.logs().contains("replacing stale socket"));

    // A second shim on the same socket must refuse, and leave the first one serving.
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&shim.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by a running process"), "{stderr}");
    assert!(std::os::unix::net::UnixStream::connect(&shim.socket).is_ok());
}

#[tokio::test]
async fn sigterm_lets_calls_in_flight_finish_and_removes_the_socket() {
    let bed = Bed::new().await;
    let mut client = bed.via_shim().await;
    let call = tokio::spawn(async move {
        client
            .call(
                "/runtime.v1.RuntimeService/Version",
                &[("fake-delay-ms", "700")],
                encode(&cri::VersionRequest::default()),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let socket = bed.shim.socket.clone();
    let Bed { dir, fake, shim } = bed;
    let status = shim.stop().await;
    let answer = call.await.unwrap().unwrap();
    assert_eq!(
        answer.grpc_status(),
        Some(0),
        "the call in flight completed: {}",
        answer.grpc_message()
    );
    assert!(status.success(), "{status}");
    assert!(!socket.exists(), "socket removed on SIGTERM");
    drop((fake, dir));
}

#[test]
fn config_errors_stop_the_shim_with_file_line_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"unix:///tmp/x.sock\"\n\n[runtime]\nendpont = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `endpont`"), "{stderr}");

    let out = Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = Command::new(binary())
        .args(["serve", "--listen", "tcp://0.0.0.0:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("flag --listen"));
}

#[tokio::test]
async fn flags_override_the_file_and_systemd_is_told_when_ready() {
    let dir = tempfile::tempdir().unwrap();
    let fake =
        ckpt_shim_tests::fake_runtime::FakeRuntime::start(&dir.path().join("runtime.sock")).await;
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"unix:///nonexistent/dir/never.sock\"\n",
    )
    .unwrap();
    let socket = dir.path().join("flag.sock");
    let notify = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--listen")
        .arg(format!("unix://{}", socket.display()))
        .arg("--runtime-endpoint")
        .arg(format!("unix://{}", fake.socket.display()))
        .args(["--log-format", "text"])
        .env("NOTIFY_SOCKET", &notify)
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("READY=1 from the shim");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    // Ready means the socket accepts now.
    let mut client = RawClient::connect(&socket).await.unwrap();
    let r = client
        .call(
            "/runtime.v1.RuntimeService/Version",
            &[],
            encode(&cri::VersionRequest::default()),
        )
        .await
        .unwrap();
    assert_eq!(r.grpc_status(), Some(0));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let n = listener.recv(&mut buf).expect("STOPPING=1 from the shim");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
    assert!(!socket.exists());
}
