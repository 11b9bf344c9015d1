//! The test harness shared by the CLI's integration tests: the real
//! `cloudshell-emulator` binary on a free port and the real `cloudshell`
//! binary pointed at it, each test in its own temporary directory.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // Test helpers.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub const AK: &str = "AKIAEMULATOR00000001";
pub const SK: &str = "cloudshell-emulator-secret-access-key";

pub fn cli_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cloudshell"))
}

/// `cargo test --workspace` builds every package's binaries into the same directory.
pub fn emulator_bin() -> PathBuf {
    let p = cli_bin().with_file_name("cloudshell-emulator");
    assert!(
        p.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        p.display()
    );
    p
}

pub struct Emulator {
    pub child: Child,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
}

impl Emulator {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let mut child = Command::new(emulator_bin())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("emu"))
            .args([
                "--create-delay",
                "100ms",
                "--start-delay",
                "100ms",
                "--stop-delay",
                "100ms",
                "--delete-delay",
                "100ms",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad first line {line:?}: {e}"));
        Self {
            child,
            endpoint: info["endpoint"].as_str().unwrap().to_owned(),
            dir,
        }
    }

    pub fn stop(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();

        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// The variables that point the CLI at this emulator, on top of [`isolated_vars`].
    pub fn client_vars(&self) -> Vec<(&'static str, OsString)> {
        let mut vars = isolated_vars(self.dir.path());
        vars.extend([
            ("AWS_ENDPOINT_URL_CLOUDSHELL", self.endpoint.clone().into()),
            ("AWS_ACCESS_KEY_ID", AK.into()),
            ("AWS_SECRET_ACCESS_KEY", SK.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]);
        vars
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(cli_bin());
        for k in leaking_vars() {
            c.env_remove(k);
        }
        c.envs(self.client_vars()).args(args);
        c
    }

    /// The same command, to run on a pty.
    pub fn pty_cmd(&self, args: &[&str]) -> pty_process::Command {
        let mut c = pty_process::Command::new(cli_bin());
        for k in leaking_vars() {
            c = c.env_remove(k);
        }
        c.envs(self.client_vars()).args(args)
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "cloudshell {args:?} failed: {}", r.stderr);
        r
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let r = self.ok(&a);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{a:?} printed {:?}: {e}", r.stdout))
    }

    pub fn arm_faults(&self, body: &str) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "POST /_emulator/faults HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 204"), "{resp}");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's variables that would carry the machine's AWS setup into a test.
pub fn leaking_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("AWS_") || k.starts_with("CLOUDSHELL_"))
        .collect()
}

/// A home of the test's own, no AWS config files, and nothing probing IMDS.
pub fn isolated_vars(home: &Path) -> Vec<(&'static str, OsString)> {
    vec![
        ("HOME", home.into()),
        ("AWS_CONFIG_FILE", home.join("no-aws-config").into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            home.join("no-aws-credentials").into(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("NO_COLOR", "1".into()),
    ]
}

/// No AWS configuration of the machine leaks in, and nothing probes IMDS.
pub fn isolate(c: &mut Command, home: &Path) {
    for k in leaking_vars() {
        c.env_remove(k);
    }
    c.envs(isolated_vars(home));
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}
