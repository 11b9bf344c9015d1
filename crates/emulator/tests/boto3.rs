//! boto3, with the shipped botocore model, against the real emulator binary:
//! a client we did not write checks our SigV4 verification and shapes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn boto3_drives_every_operation() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let mut emulator = Command::new(env!("CARGO_BIN_EXE_cloudshell-emulator"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args([
            "--create-delay",
            "50ms",
            "--start-delay",
            "50ms",
            "--stop-delay",
            "50ms",
            "--delete-delay",
            "50ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(emulator.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();

    let python = std::env::var("CLOUDSHELL_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg(root.join("tests/python/boto3_all_operations.py"))
        .env("AWS_DATA_PATH", root.join("models"))
        .env(
            "AWS_ENDPOINT_URL_CLOUDSHELL",
            info["endpoint"].as_str().unwrap(),
        )
        .env("AWS_ACCESS_KEY_ID", info["access_key_id"].as_str().unwrap())
        .env(
            "AWS_SECRET_ACCESS_KEY",
            info["secret_access_key"].as_str().unwrap(),
        )
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap_or_else(|e| panic!("could not run {python}: {e}"));
    let _ = emulator.kill();
    let _ = emulator.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boto3 checks failed\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("all boto3 checks passed"), "{stdout}");
}
