//! Drives the real `cloudshell` binary against the real `cloudshell-emulator`
//! binary over loopback, each test with its own data directory and port.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod harness;

use harness::*;

fn create_running(emu: &Emulator, extra: &[&str]) -> String {
    let mut args = vec!["create", "--wait"];
    args.extend(extra);
    let out = emu.json(&args);
    assert_eq!(out["Status"], "RUNNING");
    out["EnvironmentId"].as_str().unwrap().to_owned()
}

#[test]
fn every_operation_through_the_cli() {
    let emu = Emulator::start(&[]);
    assert_eq!(emu.json(&["list"])["Environments"], Value::Array(vec![]));

    let id = create_running(&emu, &["--name", "main"]);
    let listed = emu.json(&["list"]);
    assert_eq!(listed["Environments"][0]["EnvironmentId"], id.as_str());
    assert_eq!(listed["Environments"][0]["Status"], "RUNNING");
    let table = emu.ok(&["list"]).stdout;
    assert!(table.starts_with("ENVIRONMENT ID"), "{table}");
    assert!(table.contains(&id) && table.contains("main"), "{table}");

    // By id, by name, and the default environment when none is named.
    for who in [Some(id.as_str()), Some("main"), None] {
        let mut args = vec!["status"];
        args.extend(who);
        let s = emu.json(&args);
        assert_eq!(s["Status"], "RUNNING");
        assert_eq!(s["EnvironmentId"], id.as_str());
    }

    let session = emu.json(&["session", &id]);
    let sid = session["SessionId"].as_str().unwrap().to_owned();
    assert!(session["StreamUrl"].as_str().unwrap().starts_with("ws://"));
    assert!(!session["TokenValue"].as_str().unwrap().is_empty());
    emu.ok(&["delete-session", &sid, &id]);
    let again = emu.run(&["delete-session", &sid, &id]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("ResourceNotFoundException"),
        "{}",
        again.stderr
    );

    assert!(emu.ok(&["heartbeat"]).stdout.contains("Heartbeat sent"));
    let up = emu.json(&["upload-urls", "--file", "notes.txt"]);
    assert!(up["FileUploadPresignedUrl"].is_string());
    assert!(up["FileUploadPresignedFields"].is_object());
    let down = emu.json(&["download-urls", "--file", "notes.txt"]);
    assert!(down["FileDownloadPresignedUrl"].is_string());
    assert!(down["FileDownloadPresignedKey"].is_string());

    let pc = emu.run(&["put-credentials"]);
    assert_eq!(pc.code, 1);
    assert!(
        pc.stderr.contains("TokenDecryptionException"),
        "{}",
        pc.stderr
    );
    assert!(
        pc.stderr
            .contains("hint: PutCredentials only works from an AWS Console session"),
        "{}",
        pc.stderr
    );

    assert_eq!(emu.json(&["stop", "--wait"])["Status"], "SUSPENDED");
    let hb = emu.run(&["heartbeat"]);
    assert_eq!(hb.code, 1, "a suspended environment takes no heartbeat");
    assert!(
        hb.stderr.contains("SUSPENDED") && hb.stderr.contains("hint:"),
        "{}",
        hb.stderr
    );
    let stop_again = emu.run(&["stop", &id]);
    assert_eq!(stop_again.code, 1);
    assert!(
        stop_again.stderr.contains("needs environment"),
        "{}",
        stop_again.stderr
    );
    assert_eq!(emu.json(&["start", "--wait"])["Status"], "RUNNING");
    assert_eq!(emu.json(&["delete", &id, "--wait"])["Status"], "DELETED");
    let gone = emu.run(&["status"]);
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains("no default environment"),
        "{}",
        gone.stderr
    );
}

#[test]
fn wrong_secret_key_is_a_signature_error() {
    let emu = Emulator::start(&[]);
    let r = Run::from(
        emu.cmd(&["list"])
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("InvalidSignatureException"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: the secret access key does not match"),
        "{}",
        r.stderr
    );
}

#[test]
fn unknown_access_key_is_unrecognized() {
    let emu = Emulator::start(&[]);
    let r = Run::from(
        emu.cmd(&["list"])
            .env("AWS_ACCESS_KEY_ID", "AKIANOTKNOWN00000000")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("UnrecognizedClientException"),
        "{}",
        r.stderr
    );
}

#[test]
fn region_outside_the_credential_scope_is_refused() {
    let emu = Emulator::start(&["--regions", "us-east-1,eu-west-1"]);
    emu.ok(&["list", "--region", "eu-west-1"]);
    let r = emu.run(&["list", "--region", "ap-south-1"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("Credential should be scoped to a valid region, not 'ap-south-1'"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: these credentials are not valid for this region"),
        "{}",
        r.stderr
    );
    let bad = emu.run(&["list", "--region", "Not A Region"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn regions_are_separate() {
    let emu = Emulator::start(&[]);
    create_running(&emu, &[]);
    assert_eq!(
        emu.json(&["list", "--region", "eu-west-1"])["Environments"],
        Value::Array(vec![])
    );
    create_running(&emu, &["--region", "eu-west-1"]);
}

#[test]
fn unknown_environment_is_not_found() {
    let emu = Emulator::start(&[]);
    let r = emu.run(&["status", "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("ResourceNotFoundException"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("request id"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: run `cloudshell list`"),
        "{}",
        r.stderr
    );
}

#[test]
fn invalid_vpc_config_is_refused_before_sending() {
    let emu = Emulator::start(&[]);
    let base = [
        "create",
        "--name",
        "v",
        "--vpc-id",
        "vpc-0123456789abcdef0",
        "--subnet-id",
        "subnet-01234567",
    ];
    let mut six = base.to_vec();
    six.extend([
        "--security-group-id",
        "sg-00000001,sg-00000002,sg-00000003,sg-00000004,sg-00000005,sg-00000006",
    ]);
    let r = emu.run(&six);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("invalid VpcConfig.SecurityGroupIds"),
        "{}",
        r.stderr
    );

    let mut bad_subnet = base[..5].to_vec();
    bad_subnet.extend([
        "--subnet-id",
        "subnet-xyz",
        "--security-group-id",
        "sg-01234567",
    ]);
    let r = emu.run(&bad_subnet);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("invalid VpcConfig.SubnetIds"),
        "{}",
        r.stderr
    );

    let r = emu.run(&[
        "create",
        "--vpc-id",
        "vpc-01234567",
        "--subnet-id",
        "subnet-01234567",
        "--security-group-id",
        "sg-01234567",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("invalid EnvironmentName: a VPC environment needs a name"),
        "{}",
        r.stderr
    );

    let r = emu.run(&[
        "session",
        "--tab-id",
        "not-a-uuid",
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid TabId"), "{}", r.stderr);
    assert_eq!(
        emu.json(&["list"])["Environments"],
        Value::Array(vec![]),
        "nothing was created"
    );
}

#[test]
fn third_vpc_environment_exceeds_the_quota() {
    let emu = Emulator::start(&[]);
    let vpc = |name: &'static str| {
        vec![
            "create",
            "--name",
            name,
            "--vpc-id",
            "vpc-0123456789abcdef0",
            "--subnet-id",
            "subnet-01234567",
            "--security-group-id",
            "sg-01234567",
        ]
    };
    emu.ok(&vpc("one"));
    emu.ok(&vpc("two"));
    let r = emu.run(&vpc("three"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("ServiceQuotaExceededException"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("at most 2 VPC environments"),
        "{}",
        r.stderr
    );
    // The default environment is a separate allowance.
    emu.ok(&["create"]);
    let r = emu.run(&["create"]);
    assert!(
        r.stderr.contains("a default environment already exists"),
        "{}",
        r.stderr
    );
}

#[test]
fn throttling_is_retried_and_succeeds() {
    let emu = Emulator::start(&[]);
    emu.arm_faults(r#"{"throttle_next": 2}"#);
    let r = emu.ok(&["list", "--debug"]);
    assert_eq!(r.stderr.matches("retrying").count(), 2, "{}", r.stderr);
}

#[test]
fn server_errors_fail_clearly_after_three_attempts() {
    let emu = Emulator::start(&[]);
    emu.arm_faults(r#"{"fail_next": 3}"#);
    let r = emu.run(&["list"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("InternalServerException"), "{}", r.stderr);
    assert!(r.stderr.contains("after 3 attempts"), "{}", r.stderr);
    assert!(
        r.stderr.contains("hint: the service failed"),
        "{}",
        r.stderr
    );
    emu.ok(&["list"]);
}

#[test]
fn create_is_not_retried_after_a_server_error() {
    let emu = Emulator::start(&[]);
    emu.arm_faults(r#"{"fail_next": 1}"#);
    let r = emu.run(&["create"]);
    assert_eq!(r.code, 1, "a retry would have succeeded: {}", r.stderr);
    assert!(r.stderr.contains("InternalServerException"), "{}", r.stderr);
    // ...but throttling proves the request was not acted on, so it is retried.
    emu.arm_faults(r#"{"throttle_next": 1}"#);
    emu.ok(&["create"]);
}

#[test]
fn unreachable_endpoint_is_a_dispatch_failure() {
    let emu = Emulator::start(&[]);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = Run::from(
        emu.cmd(&["list"])
            .env(
                "AWS_ENDPOINT_URL_CLOUDSHELL",
                format!("http://127.0.0.1:{port}"),
            )
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("could not send the request (3 attempts)"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("hint: check the network and the endpoint"),
        "{}",
        r.stderr
    );
}

#[test]
fn endpoint_flag_beats_environment_variables() {
    let emu = Emulator::start(&[]);
    let r = Run::from(
        emu.cmd(&["list", "--endpoint-url", &emu.endpoint])
            .env("AWS_ENDPOINT_URL_CLOUDSHELL", "http://127.0.0.1:9")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = Run::from(
        emu.cmd(&["list"])
            .env_remove("AWS_ENDPOINT_URL_CLOUDSHELL")
            .env("AWS_ENDPOINT_URL", &emu.endpoint)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn state_survives_an_emulator_restart() {
    let emu = Emulator::start(&[]);
    let id = create_running(&emu, &["--name", "keep"]);
    let dir = emu.stop();
    let emu = Emulator::start_in(dir, &[]);
    let s = emu.json(&["status", "keep"]);
    assert_eq!(s["EnvironmentId"], id.as_str());
    assert_eq!(s["Status"], "RUNNING");
}

#[test]
fn inactivity_suspends_unless_heartbeaten() {
    let emu = Emulator::start(&["--inactivity-timeout", "3s"]);
    let id = create_running(&emu, &[]);
    let beating = emu
        .cmd(&["heartbeat", "--every", "1s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        emu.json(&["status", &id])["Status"],
        "RUNNING",
        "heartbeats keep it running"
    );
    let pid = beating.id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let out = beating.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "interrupted heartbeat exits 130"
    );
    let beats = String::from_utf8_lossy(&out.stdout)
        .matches("Heartbeat sent")
        .count();
    assert!(beats >= 3, "expected a heartbeat a second, saw {beats}");

    std::thread::sleep(Duration::from_secs(4));
    let s = emu.json(&["status", &id]);
    assert_eq!(s["Status"], "SUSPENDED");
    assert_eq!(s["StatusReason"], "suspended after inactivity");
}

#[test]
fn embedded_emulator_needs_no_aws_account() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut c = Command::new(cli_bin());
        isolate(&mut c, dir.path());
        c.env("CLOUDSHELL_EMULATOR_DATA_DIR", dir.path().join("emu"))
            .args(args);
        Run::from(c.output().unwrap())
    };
    let r = run(&["--emulated", "create", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let created: Value = serde_json::from_str(&r.stdout).unwrap();
    // A second process sees the first one's environment: the state persists.
    let r = run(&["--emulated", "list", "--output", "json"]);
    let listed: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        listed["Environments"][0]["EnvironmentId"],
        created["EnvironmentId"]
    );
    // CLOUDSHELL_EMULATED=1 is the same as --emulated.
    let mut c = Command::new(cli_bin());
    isolate(&mut c, dir.path());
    let r = Run::from(
        c.env("CLOUDSHELL_EMULATOR_DATA_DIR", dir.path().join("emu"))
            .env("CLOUDSHELL_EMULATED", "1")
            .args(["status", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn no_region_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(cli_bin());
    isolate(&mut c, dir.path());
    let r = Run::from(
        c.args(["list"])
            .env("AWS_ACCESS_KEY_ID", AK)
            .env("AWS_SECRET_ACCESS_KEY", SK)
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no region configured: pass --region"),
        "{}",
        r.stderr
    );
}

#[test]
fn completions_and_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(cli_bin());
    isolate(&mut c, dir.path());
    let r = Run::from(c.args(["completions", "bash"]).output().unwrap());
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("heartbeat") && r.stdout.contains("--endpoint-url"));
    let mut c = Command::new(cli_bin());
    isolate(&mut c, dir.path());
    let r = Run::from(c.args(["heartbeat", "--every", "soon"]).output().unwrap());
    assert_eq!(r.code, 2, "usage errors exit 2");
}

#[test]
fn up_creates_or_resumes_the_default_environment() {
    let emu = Emulator::start(&[]);
    let first = emu.json(&["up"]);
    assert_eq!(first["Status"], "RUNNING");
    let id = first["EnvironmentId"].as_str().unwrap().to_owned();
    assert_eq!(
        emu.json(&["up"])["EnvironmentId"],
        id.as_str(),
        "up is idempotent"
    );
    emu.ok(&["stop", "--wait"]);
    let resumed = emu.json(&["up"]);
    assert_eq!(resumed["EnvironmentId"], id.as_str());
    assert_eq!(resumed["Status"], "RUNNING");
}

#[test]
fn profile_supplies_credentials_region_and_endpoint() {
    let emu = Emulator::start(&["--regions", "eu-west-1"]);
    let home = emu.dir.path();
    std::fs::write(
        home.join("creds"),
        format!("[emu]\naws_access_key_id = {AK}\naws_secret_access_key = {SK}\n"),
    )
    .unwrap();
    std::fs::write(
        home.join("config"),
        format!(
            "[profile emu]\nregion = eu-west-1\nendpoint_url = {}\n",
            emu.endpoint
        ),
    )
    .unwrap();
    let mut c = Command::new(cli_bin());
    isolate(&mut c, home);
    c.env("AWS_SHARED_CREDENTIALS_FILE", home.join("creds"))
        .env("AWS_CONFIG_FILE", home.join("config"));
    let r = Run::from(
        c.args(["--profile", "emu", "up", "--output", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut c = Command::new(cli_bin());
    isolate(&mut c, home);
    let r = Run::from(
        c.env("AWS_SHARED_CREDENTIALS_FILE", home.join("creds"))
            .env("AWS_CONFIG_FILE", home.join("config"))
            .env("AWS_PROFILE", "emu")
            .args(["list"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("RUNNING"), "{}", r.stdout);
}
