//! `cloudshell exec` and `cloudshell connect` against the real emulator: a
//! real bash in a pty behind the emulator's SSM data channel, and the native
//! client in the real `cloudshell` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod harness;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn running(extra: &[&str]) -> Emulator {
    let emu = Emulator::start(extra);
    emu.ok(&["up"]);
    emu
}

/// Runs `exec` with `input` on its stdin; returns (exit code, stdout bytes, stderr).
fn exec(emu: &Emulator, command: &str, input: Option<&[u8]>) -> (i32, Vec<u8>, String) {
    let mut c = emu.cmd(&["exec", "--", command]);
    c.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || stdin.write_all(&data).unwrap())
    });
    let out = child.wait_with_output().unwrap();
    if let Some(w) = writer {
        w.join().unwrap();
    }
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256(data: &[u8]) -> String {
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let out = Command::new("head")
        .args(["-c", &n.to_string(), "/dev/urandom"])
        .output()
        .unwrap();
    out.stdout
}

/// A Console session (`SessionType: TMUX`, what this client asks for)
/// runs the shell inside tmux; `--plain-sessions` runs it straight in the
/// pty. Byte-exact commands must work through both.
fn for_each_session_kind(test: fn(&Emulator)) {
    for kind in [&[][..], &["--plain-sessions"][..]] {
        test(&running(kind));
    }
}

#[test]
fn exit_codes_pass_through() {
    for_each_session_kind(exit_codes_pass_through_in);
}

fn exit_codes_pass_through_in(emu: &Emulator) {
    for (command, code) in [
        ("true", 0),
        ("false", 1),
        ("exit 42", 42),
        ("sh -c 'kill -9 $$'", 137),
    ] {
        let (got, out, err) = exec(emu, command, None);
        assert_eq!(got, code, "{command}: {err}");
        assert!(
            out.is_empty(),
            "{command} printed {out:?}: no prompt or echo noise"
        );
    }
}

/// Runs `cloudshell exec -- ARGS...`; fails instead of hanging.
fn exec_argv(emu: &Emulator, argv: &[&str]) -> (i32, String) {
    let mut args = vec!["exec", "--"];
    args.extend_from_slice(argv);
    let mut child = emu
        .cmd(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("exec {argv:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn arguments_reach_the_remote_program_as_given() {
    for_each_session_kind(arguments_reach_the_remote_program_as_given_in);
}

fn arguments_reach_the_remote_program_as_given_in(emu: &Emulator) {
    // Several arguments are a program and its arguments, each as given.
    assert_eq!(exec_argv(emu, &["echo", "it's"]), (0, "it's\n".to_owned()));
    assert_eq!(exec_argv(emu, &["sh", "-c", "exit 7"]).0, 7);
    assert_eq!(
        exec_argv(emu, &["printf", "%s|", "a b", "$HOME", "\"q\""]),
        (0, "a b|$HOME|\"q\"|".to_owned())
    );
    // One argument is a command line: quotes and newlines in it are the
    // remote shell's to read, and an unbalanced quote is an error, not a hang.
    assert_eq!(
        exec_argv(emu, &["printf '%s\\n' \"a'b\"\necho second"]),
        (0, "a'b\nsecond\n".to_owned())
    );
    assert_ne!(exec_argv(emu, &["echo \"unbalanced"]).0, 0);
}

#[test]
fn output_is_byte_exact() {
    for_each_session_kind(output_is_byte_exact_in);
}

fn output_is_byte_exact_in(emu: &Emulator) {
    let (code, out, err) = exec(emu, r"printf 'a\nb\r\n\000\377\376 end'", None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"a\nb\r\n\x00\xff\xfe end");
    let (_, home, _) = exec(emu, "pwd", None);
    assert!(
        home.ends_with(b"\n") && String::from_utf8_lossy(&home).contains("/homes/"),
        "{home:?}"
    );
}

#[test]
fn twenty_megabytes_of_binary_output() {
    for_each_session_kind(twenty_megabytes_of_binary_output_in);
}

fn twenty_megabytes_of_binary_output_in(emu: &Emulator) {
    let (code, out, err) = exec(emu, "head -c 20000000 /dev/urandom | tee f", None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 20_000_000);
    let (_, remote, _) = exec(emu, "sha256sum f | cut -c1-64", None);
    assert_eq!(String::from_utf8_lossy(&remote).trim(), sha256(&out));
}

#[test]
fn five_megabytes_piped_in() {
    for_each_session_kind(five_megabytes_piped_in_in);
}

fn five_megabytes_piped_in_in(emu: &Emulator) {
    let data = random_bytes(5_000_000);
    let (code, out, err) = exec(
        emu,
        "cat > f; sha256sum f | cut -c1-64; wc -c < f",
        Some(&data),
    );
    assert_eq!(code, 0, "{err}");
    let text = String::from_utf8_lossy(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(sha256(&data).as_str()));
    assert_eq!(lines.next(), Some("5000000"));
    // Empty input is end-of-file at once.
    let (code, out, _) = exec(emu, "wc -c", Some(b""));
    assert_eq!((code, String::from_utf8_lossy(&out).trim()), (0, "0"));
}

/// Everything the fault-free tests check, again over a channel that drops,
/// duplicates and reorders 5% of the emulator's frames each and ends with
/// the service's short channel_closed.
#[test]
fn a_lossy_reordering_duplicating_channel_loses_nothing() {
    let emu = running(&[
        "--ssm-drop",
        "0.05",
        "--ssm-duplicate",
        "0.05",
        "--ssm-reorder",
        "0.05",
        "--ssm-short-close",
    ]);
    for (command, code) in [("true", 0), ("false", 1), ("exit 42", 42)] {
        assert_eq!(exec(&emu, command, None).0, code, "{command}");
    }
    let (code, out, err) = exec(&emu, r"printf '\000\377\376\r\n'", None);
    assert_eq!(
        (code, out.as_slice()),
        (0, &b"\x00\xff\xfe\r\n"[..]),
        "{err}"
    );
    let (code, out, err) = exec(&emu, "head -c 20000000 /dev/urandom | tee f", None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 20_000_000);
    let (_, remote, _) = exec(&emu, "sha256sum f | cut -c1-64", None);
    assert_eq!(String::from_utf8_lossy(&remote).trim(), sha256(&out));
    let data = random_bytes(5_000_000);
    let (code, out, err) = exec(&emu, "sha256sum | cut -c1-64; exit 7", Some(&data));
    assert_eq!(code, 7, "{err}");
    assert_eq!(String::from_utf8_lossy(&out).trim(), sha256(&data));
}

#[test]
fn exec_needs_a_running_environment() {
    let emu = running(&[]);
    emu.ok(&["stop", "--wait"]);
    let (code, _, err) = exec(&emu, "true", None);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("needs environment") && err.contains("hint:"),
        "{err}"
    );
    // --start resumes it first, as connect does.
    let out = emu
        .cmd(&["exec", "--start", "--", "echo", "resumed"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "resumed\n");
}

/// Reads the pty until `needle` shows up, or fails after 20 s.
async fn read_until(pty: &mut pty_process::Pty, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, pty.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            _ => panic!(
                "never saw {needle:?}; screen so far:\n{}",
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

#[tokio::test]
async fn connect_in_a_real_terminal() {
    let emu = running(&[]);
    let (mut pty, pts) = pty_process::open().unwrap();
    pty.resize(pty_process::Size::new(24, 80)).unwrap();
    let mut child = emu
        .pty_cmd(&["connect", "--inject-credentials"])
        .spawn_borrowed(&pts)
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut pty, &mut seen, "~]").await;
    pty.write_all(b"echo $((6*7))-$AWS_ACCESS_KEY_ID\r")
        .await
        .unwrap();
    read_until(&mut pty, &mut seen, "42-AKIAEMULATOR00000001").await;

    // The secret never reached the screen, and the credentials are read-only
    // and not in the history.
    assert!(
        !String::from_utf8_lossy(&seen).contains(SK),
        "the secret was echoed"
    );
    pty.write_all(b"AWS_REGION=x\r").await.unwrap();
    read_until(&mut pty, &mut seen, "readonly variable").await;
    pty.write_all(b"echo count=$(history | grep -c SECRET_ACCE[S]S)\r")
        .await
        .unwrap();
    read_until(&mut pty, &mut seen, "count=0").await;

    pty.resize(pty_process::Size::new(33, 101)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Inside tmux (a Console session) the pane is a row short: the status line.
    pty.write_all(b"stty size | sed 's/^3[23] /rows-ok-/'\r")
        .await
        .unwrap();
    read_until(&mut pty, &mut seen, "rows-ok-101").await;

    pty.write_all(b"exit\r").await.unwrap();
    read_until(&mut pty, &mut seen, "closed").await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    // The local terminal was restored: canonical mode and echo are back.
    let stty = pty_process::Command::new("stty")
        .arg("-a")
        .spawn_borrowed(&pts)
        .unwrap();
    let mut after = Vec::new();
    read_until(&mut pty, &mut after, "icanon").await;
    drop(stty);
    let modes = String::from_utf8_lossy(&after);
    assert!(
        modes.contains(" icanon") && modes.contains(" echo "),
        "{modes}"
    );
}

#[tokio::test]
async fn tilde_dot_leaves_the_session() {
    let emu = running(&[]);
    let (mut pty, pts) = pty_process::open().unwrap();
    let mut child = emu.pty_cmd(&["connect"]).spawn_borrowed(&pts).unwrap();
    let mut seen = Vec::new();
    read_until(&mut pty, &mut seen, "~]").await;
    pty.write_all(b"\r~.").await.unwrap();
    read_until(&mut pty, &mut seen, "(~.)").await;
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn exec_survives_dropped_connections() {
    let emu = running(&["--ssm-disconnect-every", "300ms"]);
    let (code, out, err) = exec(&emu, "head -c 3000000 /dev/urandom | tee f", None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 3_000_000);
    let (_, remote, _) = exec(&emu, "sha256sum f | cut -c1-64", None);
    assert_eq!(String::from_utf8_lossy(&remote).trim(), sha256(&out));
}

#[tokio::test]
async fn an_open_session_keeps_the_environment_up_until_deleted() {
    use cloudshell_ssm::channel::Event;
    use cloudshell_ssm::driver::{ConnectOptions, Session};

    let emu = running(&["--inactivity-timeout", "2s"]);
    let created = emu.json(&["session"]);
    let sid = created["SessionId"].as_str().unwrap().to_owned();
    let Session { writer, mut reader } = Session::connect(ConnectOptions::new(
        created["StreamUrl"].as_str().unwrap(),
        created["TokenValue"].as_str().unwrap(),
    ))
    .await
    .unwrap();
    writer.input(b"echo ready\r".to_vec()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        emu.json(&["status"])["Status"],
        "RUNNING",
        "an open session is activity"
    );

    // A token is good for its own session only, and the refusal says so.
    let other = Session::connect(ConnectOptions::new(
        created["StreamUrl"].as_str().unwrap(),
        "wrong-token",
    ))
    .await
    .unwrap();
    let mut refused = other.reader;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), refused.next())
            .await
            .unwrap()
            .is_none()
    );
    let err = refused.finish().await.unwrap_err().to_string();
    assert!(
        err.contains("refused") && err.contains("bad token"),
        "{err}"
    );

    emu.ok(&["delete-session", &sid]);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = reader.next().await {
            if let Event::Closed(c) = event {
                return c;
            }
        }
        panic!("the session ended without channel_closed");
    })
    .await
    .unwrap();
    assert_eq!(closed.session_id, sid);
    assert_eq!(closed.output, "session deleted");
}

#[test]
fn ssm_plugin_that_is_not_installed_is_explained() {
    let emu = running(&[]);
    let r = Run::from(
        emu.cmd(&["connect", "--ssm-plugin"])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("session-manager-plugin is not installed"),
        "{}",
        r.stderr
    );
}

/// AWS's session-manager-plugin (built unchanged from its public source; a
/// copy is in `../shared/peers/`, CI has the same).
fn aws_plugin_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/peers/session-manager-plugin");
    assert!(
        dir.join("session-manager-plugin").exists(),
        "AWS's session-manager-plugin is missing from {}",
        dir.display()
    );
    dir
}

/// `cloudshell connect --ssm-plugin` on a 30x120 terminal, with AWS's
/// plugin on the PATH, once the remote prompt is on the screen.
async fn plugin_session(emu: &Emulator) -> (pty_process::Pty, tokio::process::Child, Vec<u8>) {
    let path = format!(
        "{}:{}",
        aws_plugin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (mut pty, pts) = pty_process::open().unwrap();
    pty.resize(pty_process::Size::new(30, 120)).unwrap();
    let child = emu
        .pty_cmd(&["connect", "--ssm-plugin"])
        .env("PATH", &path)
        .spawn_borrowed(&pts)
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut pty, &mut seen, "~]").await;
    (pty, child, seen)
}

/// The plugin pings as soon as it has dialled, racing its opening frame; an
/// emulator that took the ping for a bad opening failed 15-30% of its
/// sessions. A hundred in a row, each through `connect --ssm-plugin`, must
/// all open, run a command and exit 0.
#[tokio::test]
async fn aws_session_manager_plugin_opens_a_hundred_sessions_in_a_row() {
    let emu = running(&[]);
    for n in 0..100 {
        let (mut pty, mut child, mut seen) = plugin_session(&emu).await;
        pty.write_all(format!("echo plugin-$(({n}*3))\r").as_bytes())
            .await
            .unwrap();
        read_until(&mut pty, &mut seen, &format!("plugin-{}", n * 3)).await;
        pty.write_all(b"exit\r").await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .unwrap_or_else(|_| panic!("session {n}: the plugin did not exit"))
            .unwrap();
        assert_eq!(status.code(), Some(0), "session {n}");
    }
}

/// The rest of what a user does through AWS's plugin: a resized window, a
/// Ctrl-C that stops a command, a socket dropped under it (the emulator
/// drops every WebSocket after three seconds; the plugin asks SSM's
/// ResumeSession at the endpoint `connect --ssm-plugin` handed it for a
/// new token and redials), and `exit` ending it with status 0.
#[tokio::test]
async fn aws_session_manager_plugin_resizes_interrupts_and_resumes_a_dropped_socket() {
    let emu = running(&["--ssm-disconnect-every", "3s"]);
    let (mut pty, mut child, mut seen) = plugin_session(&emu).await;

    // The plugin polls the window size and sends it on.
    pty.resize(pty_process::Size::new(40, 100)).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Inside tmux (a Console session) the pane is a row short: the status line.
    pty.write_all(b"echo size-$(stty size | sed 's/^39 /40 /' | tr ' ' x)-$TMUX_PANE\r")
        .await
        .unwrap();
    read_until(&mut pty, &mut seen, "size-40x100-%").await;

    // Ctrl-C reaches the remote foreground job.
    pty.write_all(b"sleep 300\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    pty.write_all(b"\x03").await.unwrap();
    // The plugin sends Ctrl-C from its SIGINT handler, a slower path than
    // its keystrokes: a line typed at once would overtake it (and be
    // discarded by it), as it would for a user typing that fast.
    read_until(&mut pty, &mut seen, "^C").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    pty.write_all(b"echo after-$((1+1))\r").await.unwrap();
    read_until(&mut pty, &mut seen, "after-2").await;

    // Several dropped sockets later, the same shell still answers.
    pty.write_all(b"x=kept\r").await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    pty.write_all(b"echo resumed-$x-$((6*7))\r").await.unwrap();
    read_until(&mut pty, &mut seen, "resumed-kept-42").await;

    pty.write_all(b"exit\r").await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the plugin did not exit")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
