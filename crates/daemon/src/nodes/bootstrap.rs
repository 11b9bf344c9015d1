//! Installing and starting the agent through an environment's shell: the
//! commands, and what their output means. Pure functions; the node manager
//! runs them over SSM sessions.
//!
//! Layout in the environment's home (it survives suspension; CloudShell
//! keeps `$HOME` for about 120 days of disuse):
//!
//! ```text
//! ~/.cloudshell-agent/bin/cloudshell-agent   the binary
//! ~/.cloudshell-agent/identity/              the agent's certificate and key
//! ~/.cloudshell-agent/shards/                the shards
//! ~/.cloudshell-agent/agent.line             the JSON line it printed
//! ~/.cloudshell-agent/agent.log              its stderr
//! ```
//!
//! Every command runs in a subshell: an `exit` in the session's own shell
//! would end the session before the exec framing sees the status.

use std::net::SocketAddr;

use cloudshell_net::quic::Route;
use cloudshell_net::stun::NatKind;
use cloudshell_net::tls::Fingerprint;
use cloudshell_ssm::transfer::shell_quote;

/// The agent's directory, relative to the home.
pub const AGENT_DIR: &str = ".cloudshell-agent";
/// Where the binary is uploaded before it is checked and moved into place,
/// relative to the home.
pub const UPLOAD_PATH: &str = ".cloudshell-agent/bin/cloudshell-agent.upload";
/// How long the start command waits for the agent's line.
pub const START_WAIT_SECS: u32 = 20;

/// Why a bootstrap step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    /// The shell's answer did not have the expected shape.
    #[error("unexpected answer from the shell: {0}")]
    Unexpected(String),
    /// The uploaded binary is not the one sent.
    #[error("the uploaded agent does not match what was sent (remote SHA-256 {0})")]
    Corrupt(String),
    /// The agent did not start; its log says why.
    #[error("the agent did not start: {0}")]
    NotStarted(String),
}

/// What the prepare command found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// SHA-256 (hex) of the installed binary, if there is one.
    pub agent_sha256: Option<String>,
    /// Whether the agent's data directory holds shards: false in a new or
    /// reclaimed home.
    pub has_shards: bool,
}

/// Creates the directories and reports what is installed.
pub fn prepare_command() -> String {
    format!(
        r#"( cd || exit 1; d={dir}; mkdir -p "$d/bin" || exit 1; b="$d/bin/cloudshell-agent"; if [ -f "$b" ]; then echo "agent-sha256 $(sha256sum "$b" | cut -d' ' -f1)"; else echo "agent-sha256 none"; fi; if [ -n "$(ls -A "$d/shards" 2>/dev/null)" ]; then echo "shards yes"; else echo "shards no"; fi )"#,
        dir = shell_quote(AGENT_DIR)
    )
}

/// Reads the prepare command's output.
pub fn parse_prepare(output: &str) -> Result<Installed, BootstrapError> {
    let mut sha = None;
    let mut shards = None;
    for line in output.lines() {
        match line.trim().split_once(' ') {
            Some(("agent-sha256", "none")) => sha = Some(None),
            Some(("agent-sha256", h)) if h.len() == 64 => sha = Some(Some(h.to_owned())),
            Some(("shards", v)) => shards = Some(v == "yes"),
            _ => {}
        }
    }
    match (sha, shards) {
        (Some(agent_sha256), Some(has_shards)) => Ok(Installed {
            agent_sha256,
            has_shards,
        }),
        _ => Err(BootstrapError::Unexpected(truncate(output))),
    }
}

/// Checks the uploaded binary against `sha256` and moves it into place
/// (over a running agent's binary too: the running process keeps its own).
pub fn install_command(sha256: &str) -> String {
    format!(
        r#"( cd || exit 1; u={upload}; s=$(sha256sum "$u" | cut -d' ' -f1); if [ "$s" != {sha} ]; then rm -f "$u"; echo "corrupt $s"; exit 1; fi; chmod 755 "$u" && mv -f "$u" {dir}/bin/cloudshell-agent && echo installed )"#,
        upload = shell_quote(UPLOAD_PATH),
        sha = shell_quote(sha256),
        dir = shell_quote(AGENT_DIR),
    )
}

/// Reads the install command's output.
pub fn parse_install(code: i32, output: &str) -> Result<(), BootstrapError> {
    if code == 0 && output.lines().any(|l| l.trim() == "installed") {
        return Ok(());
    }
    match output
        .lines()
        .find_map(|l| l.trim().strip_prefix("corrupt "))
    {
        Some(s) => Err(BootstrapError::Corrupt(s.to_owned())),
        None => Err(BootstrapError::Unexpected(truncate(output))),
    }
}

/// How the agent is started.
#[derive(Debug, Clone)]
pub struct AgentArgs {
    /// The daemon's certificate, the only peer the agent will serve.
    pub daemon: Fingerprint,
    /// Its quota in bytes.
    pub quota: u64,
    /// STUN servers.
    pub stun: Vec<String>,
    /// The daemon's endpoints, to punch towards.
    pub punch: Vec<SocketAddr>,
}

/// Stops the agent that runs (if any: the pid is in its last line, and it
/// must be gone before another opens the same shards), starts a new one
/// detached from the session, and prints its line.
pub fn start_command(args: &AgentArgs) -> String {
    let mut flags = format!(
        "--daemon-fingerprint {} --quota {} --listen 0.0.0.0:0",
        args.daemon, args.quota
    );
    for s in &args.stun {
        flags.push_str(&format!(" --stun {}", shell_quote(s)));
    }
    for p in &args.punch {
        flags.push_str(&format!(" --punch {p}"));
    }
    format!(
        r#"( cd || exit 1; d={dir}; if [ -s "$d/agent.line" ]; then old=$(sed -n 's/.*"pid":\([0-9][0-9]*\).*/\1/p' "$d/agent.line"); if [ -n "$old" ] && kill "$old" 2>/dev/null; then i=0; while kill -0 "$old" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -9 "$old" 2>/dev/null; fi; fi; rm -f "$d/agent.line"; setsid "$d/bin/cloudshell-agent" {flags} > "$d/agent.line" 2>> "$d/agent.log" < /dev/null & i=0; while [ $i -lt {wait} ]; do if grep -q '}}' "$d/agent.line" 2>/dev/null; then echo "line $(head -n 1 "$d/agent.line")"; exit 0; fi; sleep 0.1; i=$((i+1)); done; echo "log $(tail -n 5 "$d/agent.log" 2>/dev/null | tr '\n' ' ')"; exit 1 )"#,
        dir = shell_quote(AGENT_DIR),
        wait = START_WAIT_SECS * 10,
    )
}

/// What an agent said about itself when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLine {
    /// Its certificate.
    pub fingerprint: Fingerprint,
    /// Its local address.
    pub local_addr: SocketAddr,
    /// Its public address, when STUN answered.
    pub public_addr: Option<SocketAddr>,
    /// Its NAT, when STUN could tell.
    pub nat: Option<NatKind>,
    /// Its process id in the environment.
    pub pid: u32,
    /// Its software version.
    pub version: String,
}

impl AgentLine {
    /// Where to dial it: public address first.
    pub fn route(&self) -> Route {
        let mut addrs: Vec<SocketAddr> = self.public_addr.into_iter().collect();
        if !addrs.contains(&self.local_addr) {
            addrs.push(self.local_addr);
        }
        Route {
            addrs,
            nat: self.nat,
        }
    }
}

/// Reads the start command's output.
pub fn parse_start(code: i32, output: &str) -> Result<AgentLine, BootstrapError> {
    if let Some(json) = output.lines().find_map(|l| l.trim().strip_prefix("line ")) {
        return parse_line(json);
    }
    let log = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("log "))
        .unwrap_or("");
    Err(BootstrapError::NotStarted(if log.trim().is_empty() {
        format!(
            "no line within {START_WAIT_SECS} s and nothing in its log (exit {code}): {}",
            truncate(output)
        )
    } else {
        log.trim().to_owned()
    }))
}

/// Parses the agent's JSON line.
pub fn parse_line(json: &str) -> Result<AgentLine, BootstrapError> {
    let bad =
        |what: String| BootstrapError::Unexpected(format!("{what} in the agent's line {json}"));
    let line: cloudshell_node::Announcement =
        serde_json::from_str(json).map_err(|e| bad(format!("not an announcement ({e})")))?;
    Ok(AgentLine {
        fingerprint: Fingerprint::parse(&line.fingerprint)
            .ok_or_else(|| bad("no fingerprint".to_owned()))?,
        local_addr: line.local_addr,
        public_addr: line.public_addr,
        nat: line.nat.as_deref().and_then(NatKind::parse),
        pid: line.pid,
        version: line.version.unwrap_or_else(|| "unknown".to_owned()),
    })
}

fn truncate(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a command in a fresh home with bash, as the session would.
    fn bash(home: &std::path::Path, command: &str) -> (i32, String) {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(command)
            .env("HOME", home)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Puts `script` where the start command runs the agent from.
    fn install_stand_in(home: &std::path::Path, script: &str) {
        let bin = home.join(".cloudshell-agent/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("cloudshell-agent"), script).unwrap();
        std::process::Command::new("chmod")
            .args(["755", bin.join("cloudshell-agent").to_str().unwrap()])
            .status()
            .unwrap();
    }

    #[test]
    fn prepare_reports_a_new_home_then_an_installed_one() {
        let home = tempfile::tempdir().unwrap();
        let (_, out) = bash(home.path(), &prepare_command());
        assert_eq!(
            parse_prepare(&out).unwrap(),
            Installed {
                agent_sha256: None,
                has_shards: false
            }
        );
        std::fs::write(home.path().join(UPLOAD_PATH), b"binary").unwrap();
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let (code, out) = bash(home.path(), &install_command(sha));
        assert!(matches!(
            parse_install(code, &out),
            Err(BootstrapError::Corrupt(_))
        ));
        assert!(
            !home.path().join(UPLOAD_PATH).exists(),
            "a bad upload is removed"
        );
        std::fs::write(home.path().join(UPLOAD_PATH), b"binary").unwrap();
        let real = "9a3a45d01531a20e89ac6ae10b0b0beb0492acd7216a368aa062d1a5fecaf9cd";
        let (code, out) = bash(home.path(), &install_command(real));
        parse_install(code, &out).unwrap();
        std::fs::create_dir_all(home.path().join(".cloudshell-agent/shards/ab")).unwrap();
        let (_, out) = bash(home.path(), &prepare_command());
        assert_eq!(
            parse_prepare(&out).unwrap(),
            Installed {
                agent_sha256: Some(real.to_owned()),
                has_shards: true
            }
        );
    }

    #[test]
    fn start_runs_the_binary_detached_and_reads_its_line() {
        let home = tempfile::tempdir().unwrap();
        // A stand-in agent: prints a line like the real one, then stays.
        let fake = format!(
            "#!/bin/sh\necho '{{\"fingerprint\":\"{}\",\"local_addr\":\"127.0.0.1:5000\",\"public_addr\":null,\"nat\":\"unknown\",\"pid\":'$$',\"version\":\"t\"}}'\necho \"$@\" >&2\nexec sleep 30\n",
            "ab".repeat(32)
        );
        install_stand_in(home.path(), &fake);
        let args = AgentArgs {
            daemon: Fingerprint::parse(&"cd".repeat(32)).unwrap(),
            quota: 1 << 20,
            stun: vec!["stun.example:3478".into()],
            punch: vec!["127.0.0.1:9".parse().unwrap()],
        };
        let (code, out) = bash(home.path(), &start_command(&args));
        let first = parse_start(code, &out).unwrap();
        assert_eq!(first.local_addr, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(first.route().addrs.len(), 1);
        let log = std::fs::read_to_string(home.path().join(".cloudshell-agent/agent.log")).unwrap();
        assert!(
            log.contains("--punch 127.0.0.1:9") && log.contains("--stun stun.example:3478"),
            "{log}"
        );
        // Started again: the first is stopped.
        let (code, out) = bash(home.path(), &start_command(&args));
        let second = parse_start(code, &out).unwrap();
        assert_ne!(first.pid, second.pid);
        let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(
            !alive(first.pid)
                || std::fs::read_to_string(format!("/proc/{}/stat", first.pid))
                    .unwrap()
                    .contains(") Z")
        );
        assert!(alive(second.pid));
        let _ = std::process::Command::new("kill")
            .arg(second.pid.to_string())
            .status();
    }

    #[test]
    fn an_agent_that_dies_at_once_is_reported_with_its_log() {
        let home = tempfile::tempdir().unwrap();
        install_stand_in(
            home.path(),
            "#!/bin/sh\necho 'cloudshell-agent: error: cannot open shards' >&2\nexit 1\n",
        );
        let args = AgentArgs {
            daemon: Fingerprint::parse(&"cd".repeat(32)).unwrap(),
            quota: 1,
            stun: vec![],
            punch: vec![],
        };
        // Shortened: the real wait is 20 s.
        let command =
            start_command(&args).replace(&format!("-lt {}", START_WAIT_SECS * 10), "-lt 10");
        let (code, out) = bash(home.path(), &command);
        match parse_start(code, &out) {
            Err(BootstrapError::NotStarted(m)) => assert!(m.contains("cannot open shards"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_are_parsed_strictly() {
        let fp = "ab".repeat(32);
        let good = format!(
            r#"{{"fingerprint":"{fp}","local_addr":"10.0.0.2:4000","public_addr":"203.0.113.9:4000","nat":"endpoint-independent","pid":42,"version":"0.1.0"}}"#
        );
        let line = parse_line(&good).unwrap();
        assert_eq!(line.nat, Some(NatKind::EndpointIndependent));
        assert_eq!(line.route().addrs[0], "203.0.113.9:4000".parse().unwrap());
        assert!(parse_line("{}").is_err());
        assert!(parse_line("not json").is_err());
        assert!(parse_line(&good.replace("42", "-1")).is_err());
    }
}
