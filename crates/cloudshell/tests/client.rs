//! The library against a real emulator over real loopback sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use cloudshell::error::SdkError;
use cloudshell::operation::create_environment::{CreateEnvironmentError, CreateEnvironmentInput};
use cloudshell::operation::describe_environments::DescribeEnvironmentsError;
use cloudshell::operation::get_environment_status::{
    GetEnvironmentStatusError, GetEnvironmentStatusInput,
};
use cloudshell::{
    Client, Config, Credentials, EnvironmentId, Region, RetryConfig, TimeoutConfig, VpcConfig,
};
use cloudshell_emulator::config::{DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY};
use cloudshell_emulator::{Emulator, EmulatorConfig, FaultConfig};

fn creds() -> Credentials {
    Credentials::new(
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_SECRET_ACCESS_KEY,
        None,
        None,
        "test",
    )
}

fn fast_retries() -> RetryConfig {
    RetryConfig {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn client_for(endpoint: &str) -> Client {
    Client::new(
        Config::builder()
            .region(Region::new("us-east-1").unwrap())
            .endpoint_url(endpoint)
            .credentials(creds())
            .retry(fast_retries())
            .build()
            .unwrap(),
    )
}

async fn emulator(faults: FaultConfig) -> (Emulator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    config.timings.create = Duration::from_millis(20);
    config.faults = faults;
    let e = Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (e, dir)
}

#[tokio::test]
async fn create_then_status_round_trip() {
    let (emu, _dir) = emulator(FaultConfig::default()).await;
    let client = client_for(&emu.endpoint());
    let out = client
        .create_environment(&CreateEnvironmentInput {
            environment_name: Some("lib".into()),
            vpc_config: None,
        })
        .await
        .unwrap();
    assert_eq!(out.status.as_str(), "CREATING");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = client
        .get_environment_status(&GetEnvironmentStatusInput::new(out.environment_id.clone()))
        .await
        .unwrap();
    assert_eq!(s.status.as_str(), "RUNNING");
    assert_eq!(s.environment_name.as_deref(), Some("lib"));
    let listed = client.describe_environments().await.unwrap().environments;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].environment_id, out.environment_id);
}

#[tokio::test]
async fn service_errors_are_typed_and_carry_metadata() {
    let (emu, _dir) = emulator(FaultConfig::default()).await;
    let client = client_for(&emu.endpoint());
    let err = client
        .get_environment_status(&GetEnvironmentStatusInput::new(
            EnvironmentId::new("missing").unwrap(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        Some(&GetEnvironmentStatusError::ResourceNotFound)
    );
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    assert_eq!(err.status(), Some(404));
    assert!(err.request_id().is_some_and(|id| id.len() == 36));
    assert!(err.message().unwrap().contains("missing"));
}

#[tokio::test]
async fn invalid_input_is_refused_before_sending() {
    // Nothing listens here: an attempt to send would be a dispatch failure.
    let client = client_for("http://127.0.0.1:9");
    let err = client
        .create_environment(&CreateEnvironmentInput {
            environment_name: Some("v".into()),
            vpc_config: Some(VpcConfig {
                vpc_id: "vpc-01234567".into(),
                subnet_ids: vec![],
                security_group_ids: vec!["sg-01234567".into()],
            }),
        })
        .await
        .unwrap_err();
    match err {
        SdkError::InvalidInput(v) => assert_eq!(v.field, "VpcConfig.SubnetIds"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_is_retried_up_to_the_attempt_limit() {
    let (emu, _dir) = emulator(FaultConfig {
        throttle_every: Some(1),
        fail_every: None,
    })
    .await;
    let err = client_for(&emu.endpoint())
        .describe_environments()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(&DescribeEnvironmentsError::Throttling));
    let SdkError::ServiceError(e) = err else {
        panic!()
    };
    assert_eq!(e.attempts(), 3);
    assert_eq!(e.meta().status, 429);
}

#[tokio::test]
async fn every_other_call_failing_still_succeeds() {
    let (emu, _dir) = emulator(FaultConfig {
        throttle_every: None,
        fail_every: Some(2),
    })
    .await;
    let client = client_for(&emu.endpoint());
    for _ in 0..4 {
        client.describe_environments().await.unwrap();
    }
}

#[tokio::test]
async fn create_is_not_retried_after_a_500() {
    let (emu, _dir) = emulator(FaultConfig {
        throttle_every: None,
        fail_every: Some(1),
    })
    .await;
    let err = client_for(&emu.endpoint())
        .create_environment(&CreateEnvironmentInput::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Some(&CreateEnvironmentError::InternalServer));
    let SdkError::ServiceError(e) = err else {
        panic!()
    };
    assert_eq!(
        e.attempts(),
        1,
        "a non-idempotent create must not be repeated"
    );
}

#[tokio::test]
async fn refused_connections_are_retried_even_for_create() {
    let err = client_for("http://127.0.0.1:9")
        .create_environment(&CreateEnvironmentInput::default())
        .await
        .unwrap_err();
    match err {
        SdkError::DispatchFailure {
            attempts,
            may_have_reached_service,
            ..
        } => {
            assert_eq!(attempts, 3);
            assert!(!may_have_reached_service);
        }
        other => panic!("expected DispatchFailure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let client = Client::new(
        Config::builder()
            .region(Region::new("us-east-1").unwrap())
            .endpoint_url(format!("http://{addr}"))
            .credentials(creds())
            .retry(fast_retries())
            .timeouts(TimeoutConfig {
                connect: Duration::from_secs(1),
                attempt: Duration::from_millis(200),
                operation: Duration::from_secs(5),
            })
            .build()
            .unwrap(),
    );
    let err = client.describe_environments().await.unwrap_err();
    assert!(
        matches!(err, SdkError::TimeoutError { attempts: 3 }),
        "{err:?}"
    );
}

/// Signs a request by hand at `time` and returns the emulator's status and body.
async fn raw_call(
    endpoint: &str,
    time: SystemTime,
    path: &str,
    target: Option<&str>,
) -> (u16, String) {
    let url = format!("{endpoint}{path}");
    let host = endpoint.trim_start_matches("http://").to_owned();
    let mut headers = vec![
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
    ];
    if let Some(t) = target {
        headers.push(("x-amz-target", t));
    }
    let identity = creds().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("cloudshell")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(b"{}"),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = reqwest::Client::new().post(&url).body("{}");
    for (k, v) in headers
        .iter()
        .copied()
        .filter(|(k, _)| *k != "host")
        .chain(instructions.headers())
    {
        request = request.header(k, v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn clock_skew_over_five_minutes_is_refused() {
    let (emu, _dir) = emulator(FaultConfig::default()).await;
    let now = SystemTime::now();
    let (status, _) = raw_call(
        &emu.endpoint(),
        now - Duration::from_secs(240),
        "/describeEnvironments",
        None,
    )
    .await;
    assert_eq!(status, 200, "4 minutes of skew is tolerated");
    let (status, body) = raw_call(
        &emu.endpoint(),
        now - Duration::from_secs(360),
        "/describeEnvironments",
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("InvalidSignatureException") && body.contains("Signature expired"),
        "{body}"
    );
    let (status, body) = raw_call(
        &emu.endpoint(),
        now + Duration::from_secs(360),
        "/describeEnvironments",
        None,
    )
    .await;
    assert_eq!(status, 403);
    assert!(body.contains("Signature not yet current"), "{body}");
}

#[tokio::test]
async fn x_amz_target_route_is_accepted() {
    let (emu, _dir) = emulator(FaultConfig::default()).await;
    let (status, body) = raw_call(
        &emu.endpoint(),
        SystemTime::now(),
        "/",
        Some("AWSCloudShell.DescribeEnvironments"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Environments"), "{body}");
}

/// Presigned transfers over real HTTP: a POST lands in the home, a GET brings
/// it back, and forms or URLs that were tampered with are refused with S3's
/// codes.
#[tokio::test]
async fn presigned_urls_move_files_and_refuse_tampering() {
    use cloudshell::operation::FileUrlsInput;
    use cloudshell::presigned::{PresignedError, PresignedGet, PresignedPost};

    let (emu, dir) = emulator(FaultConfig::default()).await;
    let client = client_for(&emu.endpoint());
    let id = client
        .create_environment(&CreateEnvironmentInput::default())
        .await
        .unwrap()
        .environment_id;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let urls = |name: &str| FileUrlsInput {
        environment_id: id.clone(),
        file_name: Some(name.to_owned()),
    };
    let body = |data: &'static [u8]| {
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(data))])
    };
    let refused = |e: PresignedError| match e {
        PresignedError::Refused { status, code, .. } => (status, code),
        other => panic!("expected a refusal, got {other:?}"),
    };

    let out = client.get_file_upload_urls(&urls("a.txt")).await.unwrap();
    let post = PresignedPost::from_output(&out).unwrap();
    client
        .post_presigned(&post, "a.txt", 5, body(b"hello"))
        .await
        .unwrap();
    let home = dir.path().join("homes").join(id.as_str());
    assert_eq!(std::fs::read(home.join("a.txt")).unwrap(), b"hello");

    // The key is bound by the policy.
    let mut other = post.clone();
    for (k, v) in &mut other.fields {
        if k == "key" {
            *v = format!("{id}/b.txt");
        }
    }
    let e = client
        .post_presigned(&other, "b.txt", 5, body(b"hello"))
        .await
        .unwrap_err();
    assert_eq!(refused(e), (403, "AccessDenied".to_owned()));
    // So is the signature.
    let mut forged = post.clone();
    for (k, v) in &mut forged.fields {
        if k == "x-amz-signature" {
            *v = "0".repeat(64);
        }
    }
    let e = client
        .post_presigned(&forged, "a.txt", 5, body(b"HELLO"))
        .await
        .unwrap_err();
    assert_eq!(refused(e), (403, "SignatureDoesNotMatch".to_owned()));
    assert_eq!(std::fs::read(home.join("a.txt")).unwrap(), b"hello");

    let out = client.get_file_download_urls(&urls("a.txt")).await.unwrap();
    let get = PresignedGet::from_output(&out).unwrap();
    let mut download = client.get_presigned(&get).await.unwrap();
    assert_eq!(download.length, Some(5));
    assert_eq!(&download.chunk().await.unwrap().unwrap()[..], b"hello");
    // Without the customer key, or for another file, no.
    let keyless = PresignedGet {
        customer_key: None,
        customer_key_md5: None,
        ..get.clone()
    };
    let e = client.get_presigned(&keyless).await.unwrap_err();
    assert_eq!(refused(e), (400, "InvalidRequest".to_owned()));
    let elsewhere = PresignedGet {
        url: get.url.replace("/a.txt?", "/b.txt?"),
        ..get.clone()
    };
    let e = client.get_presigned(&elsewhere).await.unwrap_err();
    assert_eq!(refused(e), (403, "SignatureDoesNotMatch".to_owned()));
    // A name that leaves the home is refused by the service.
    let out = client
        .get_file_upload_urls(&urls("../escape.txt"))
        .await
        .unwrap();
    let e = client
        .post_presigned(
            &PresignedPost::from_output(&out).unwrap(),
            "x",
            1,
            body(b"x"),
        )
        .await
        .unwrap_err();
    assert_eq!(refused(e).0, 400);
    assert!(!dir.path().join("homes/escape.txt").exists());
}
