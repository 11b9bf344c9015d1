//! CreateSession and the data channel as clients other than ours call them,
//! against the emulator in process: a signed CreateSession with
//! EnvironmentId alone (what public clients send), and a WebSocket that
//! pings before its opening frame and sends the schema version as a number
//! (what AWS's session-manager-plugin and an independent Python client do).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use cloudshell::operation::create_environment::CreateEnvironmentInput;
use cloudshell::operation::create_session::CreateSessionInput;
use cloudshell::{EnvironmentId, EnvironmentStatus};
use cloudshell_ssm::codec::PayloadType;
use cloudshell_ssm::driver::{ConnectOptions, Session};
use cloudshell_ssm::{ClientMessage, MessageType};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

const REGION: &str = "us-east-1";

struct Running {
    emulator: cloudshell_emulator::Emulator,
    client: cloudshell::Client,
    id: EnvironmentId,
    _dir: tempfile::TempDir,
}

async fn running_environment() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = cloudshell_emulator::EmulatorConfig::new(dir.path().join("emulator"));
    config.timings.create = Duration::from_millis(50);
    config.timings.start = Duration::from_millis(50);
    let emulator = cloudshell_emulator::Emulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let cred = emulator.config().credentials[0].clone();
    let client = cloudshell::ClientSource::endpoint(
        emulator.endpoint(),
        &cred.access_key_id,
        &cred.secret_access_key,
    )
    .client(&cloudshell::Region::new(REGION).unwrap())
    .await
    .unwrap();
    let id = client
        .create_environment(&CreateEnvironmentInput::default())
        .await
        .unwrap()
        .environment_id;
    for _ in 0..200 {
        let status = client
            .get_environment_status(
                &cloudshell::operation::get_environment_status::GetEnvironmentStatusInput::new(
                    id.clone(),
                ),
            )
            .await
            .unwrap()
            .status;
        if status == EnvironmentStatus::Running {
            return Running {
                emulator,
                client,
                id,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the environment did not become RUNNING");
}

/// POSTs `body` to `path`, signed with SigV4 as any AWS client signs it.
async fn signed_post(env: &Running, path: &str, body: &str) -> (u16, serde_json::Value) {
    signed_call(env, "cloudshell", None, path, body).await
}

/// An SSM JSON 1.1 call (`X-Amz-Target: AmazonSSM.<operation>`), as the
/// plugin's AWS SDK makes it.
async fn ssm_call(env: &Running, operation: &str, body: &str) -> (u16, serde_json::Value) {
    signed_call(
        env,
        "ssm",
        Some(&format!("AmazonSSM.{operation}")),
        "/",
        body,
    )
    .await
}

async fn signed_call(
    env: &Running,
    service: &str,
    target: Option<&str>,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let cred = env.emulator.config().credentials[0].clone();
    let identity: Identity = Credentials::new(
        &cred.access_key_id,
        &cred.secret_access_key,
        None,
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("{}{path}", env.emulator.endpoint());
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut headers = vec![
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(t) = target {
        headers.push(("x-amz-target", t));
    }
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("content-type", "application/json")
        .header("x-amz-target", target.unwrap_or_default())
        .body(body.to_owned())
        .unwrap();
    instructions.apply_to_request_http1x(&mut request);
    let mut out = reqwest::Client::new().post(&url).body(body.to_owned());
    if let Some(t) = target {
        out = out.header("x-amz-target", t);
    }
    for (k, v) in request.headers() {
        if k.as_str() == "x-amz-target" {
            continue;
        }
        out = out.header(k.as_str(), v.to_str().unwrap());
    }
    let response = out.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_session_with_the_environment_id_alone_opens_a_working_session() {
    let env = running_environment().await;
    let body = serde_json::json!({ "EnvironmentId": env.id.as_str() }).to_string();
    let (status, answer) = signed_post(&env, "/createSession", &body).await;
    assert_eq!(status, 200, "{answer}");
    let session = Session::connect(ConnectOptions::new(
        answer["StreamUrl"].as_str().unwrap(),
        answer["TokenValue"].as_str().unwrap(),
    ))
    .await
    .unwrap();
    let (code, out) = cloudshell_ssm::exec::capture_command(session, "echo bare; (exit 3)")
        .await
        .unwrap();
    assert_eq!((code, String::from_utf8_lossy(&out).trim()), (3, "bare"));

    // What is sent is still checked.
    let body =
        serde_json::json!({ "EnvironmentId": env.id.as_str(), "TabId": "not-a-uuid" }).to_string();
    let (status, answer) = signed_post(&env, "/createSession", &body).await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_killed_mid_command_is_reported_as_killed() {
    let env = running_environment().await;
    let (url, token) = stream(&env).await;
    let session = Session::connect(ConnectOptions::new(&url, &token))
        .await
        .unwrap();
    let err = cloudshell_ssm::exec::capture_command(session, "kill -9 $$")
        .await
        .unwrap_err();
    let said = err.to_string();
    assert!(said.contains("while the command ran"), "{said}");
    assert!(said.contains("the shell was killed by signal 9"), "{said}");
}

async fn stream(env: &Running) -> (String, String) {
    let s = env
        .client
        .create_session(&CreateSessionInput::new(env.id.clone()))
        .await
        .unwrap();
    (s.stream_url, s.token_value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_before_the_opening_frame_and_a_numeric_schema_version_are_accepted() {
    let env = running_environment().await;
    let (url, token) = stream(&env).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    // The plugin's keep-alive ping can beat its opening frame.
    ws.send(Message::Ping(b"keep-alive".to_vec().into()))
        .await
        .unwrap();
    let open = serde_json::json!({
        "MessageSchemaVersion": 1,
        "RequestId": "7f0f5a7e-3b52-4c43-9a9e-1c1f1d2a3b4c",
        "TokenValue": token,
    });
    ws.send(Message::Text(open.to_string().into()))
        .await
        .unwrap();
    // The channel is open, and the agent's first word is a HandshakeRequest
    // naming a current agent version and the shell session type.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(message) = ws.next().await {
            match message.unwrap() {
                Message::Binary(b) => {
                    let frame = ClientMessage::decode(&b).unwrap();
                    if frame.message_type == MessageType::OutputStreamData {
                        return Some(frame);
                    }
                }
                Message::Close(c) => panic!("closed: {c:?}"),
                _ => {}
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("an agent frame");
    assert_eq!(first.payload_type, PayloadType::HANDSHAKE_REQUEST);
    let request: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert!(
        request["AgentVersion"].as_str().unwrap().starts_with("3."),
        "{request}"
    );
    assert_eq!(
        request["RequestedClientActions"][0]["ActionParameters"]["SessionType"], "Standard_Stream",
        "{request}"
    );

    // A binary frame where the opening belongs is refused, with the reason.
    let (url, _) = stream(&env).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    ws.send(Message::Binary(b"not an opening".to_vec().into()))
        .await
        .unwrap();
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(c))) => return c,
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .unwrap()
    .expect("a close frame with a reason");
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("binary frame"), "{}", close.reason);
}

/// Opens `url` with `token` and says whether the shell's session got as far
/// as the handshake (refusals close the socket with a reason instead).
async fn opens(url: &str, token: &str) -> Result<(), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = serde_json::json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": "7f0f5a7e-3b52-4c43-9a9e-1c1f1d2a3b4c",
        "TokenValue": token,
    });
    ws.send(Message::Text(open.to_string().into()))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(_))) => return Ok(()),
                Some(Ok(Message::Close(c))) => {
                    return Err(c.map(|c| c.reason.to_string()).unwrap_or_default());
                }
                Some(Ok(_)) => continue,
                other => return Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap()
}

/// AWS's plugin asks SSM's ResumeSession for a new token after a dropped
/// socket and redials with it: the emulator answers for its own sessions,
/// signed for `ssm`, and only to their owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_session_gives_a_fresh_token_for_the_same_session() {
    let env = running_environment().await;
    let session = env
        .client
        .create_session(&CreateSessionInput::new(env.id.clone()))
        .await
        .unwrap();
    opens(&session.stream_url, &session.token_value)
        .await
        .unwrap();

    let body = serde_json::json!({ "SessionId": session.session_id }).to_string();
    let (status, resumed) = ssm_call(&env, "ResumeSession", &body).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["SessionId"], session.session_id.as_str());
    assert_eq!(resumed["StreamUrl"], session.stream_url.as_str());
    let token = resumed["TokenValue"].as_str().unwrap();
    assert_ne!(token, session.token_value);
    opens(&session.stream_url, token).await.unwrap();
    // The old token is spent.
    let refused = opens(&session.stream_url, &session.token_value)
        .await
        .unwrap_err();
    assert!(refused.contains("token"), "{refused}");

    // Signed for the wrong service, an unknown session, no session: refused with reasons.
    let (status, answer) = signed_call(
        &env,
        "cloudshell",
        Some("AmazonSSM.ResumeSession"),
        "/",
        &body,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let unknown = serde_json::json!({ "SessionId": "someone-else-0123" }).to_string();
    let (status, answer) = ssm_call(&env, "ResumeSession", &unknown).await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("DoesNotExistException")),
        "{answer}"
    );
    let (status, answer) = ssm_call(&env, "ResumeSession", "{}").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("SessionId"),
        "{answer}"
    );

    // TerminateSession ends it: no more resuming.
    let (status, answer) = ssm_call(&env, "TerminateSession", &body).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = ssm_call(&env, "ResumeSession", &body).await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("DoesNotExistException")),
        "{answer}"
    );
}
