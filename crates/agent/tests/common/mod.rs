//! Helpers shared by the agent's tests: starting the real binary, and
//! well-formed shards.

#![allow(dead_code)] // Each test file uses its own subset.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use cloudshell_net::tls::{Fingerprint, Identity};
use cloudshell_store::ShardKey;
use cloudshell_store::format::{FileId, HEADER_LEN, ShardHeader, shard_len};

pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    pub dir: PathBuf,
    /// The line it printed on start.
    pub line: serde_json::Value,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(daemon: &Identity, dir: &Path, quota: &str, listen: &str) -> Agent {
    start_with(daemon, dir, &["--quota", quota, "--listen", listen])
}

/// Starts the agent with these flags and reads the line it prints.
pub fn start_with(daemon: &Identity, dir: &Path, flags: &[&str]) -> Agent {
    start_under(&[], daemon, dir, flags, Stdio::inherit())
}

/// Starts the agent under `wrapper` (say `ip netns exec NS`), its stderr
/// going to `stderr`, and reads the line it prints.
pub fn start_under(
    wrapper: &[&str],
    daemon: &Identity,
    dir: &Path,
    flags: &[&str],
    stderr: Stdio,
) -> Agent {
    let agent = env!("CARGO_BIN_EXE_cloudshell-agent");
    let mut command = match wrapper {
        [first, rest @ ..] => {
            let mut c = Command::new(first);
            c.args(rest).arg(agent);
            c
        }
        [] => Command::new(agent),
    };
    let mut child = command
        .arg("--daemon-fingerprint")
        .arg(daemon.fingerprint().to_string())
        .arg("--data-dir")
        .arg(dir)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    Agent {
        child,
        addr: v["local_addr"].as_str().unwrap().parse().unwrap(),
        fingerprint: Fingerprint::parse(v["fingerprint"].as_str().unwrap()).unwrap(),
        dir: dir.to_path_buf(),
        line: v,
    }
}

pub fn shard(chunk: u64, index: u8, payload: usize) -> (ShardKey, Bytes) {
    let key = ShardKey {
        file_id: FileId([3; 16]),
        chunk,
        index,
    };
    let len = shard_len(payload, 6);
    let mut b = ShardHeader {
        flags: 0,
        k: 6,
        m: 3,
        key,
        payload_len: payload as u32,
        shard_len: len as u32,
    }
    .encode()
    .to_vec();
    b.resize(HEADER_LEN + len, index.wrapping_add(chunk as u8));
    (key, Bytes::from(b))
}
