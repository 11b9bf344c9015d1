//! `connect` and `exec`: shells over the native Session Manager client.

use std::io::{IsTerminal, Write};

use anyhow::{Context as _, bail};
use cloudshell::EnvironmentId;
use cloudshell::operation::create_session::{CreateSessionInput, CreateSessionOutput};
use cloudshell_ssm::channel::Event;
use cloudshell_ssm::codec::PayloadType;
use cloudshell_ssm::driver::{ConnectOptions, Session, SessionWriter};
use cloudshell_ssm::exec::{ExecError, run_command};
use tokio::io::AsyncReadExt;

use crate::args::{ConnectArgs, ExecArgs};
use crate::commands::{ApiResult, Context, ensure_running};

/// Exit status of `exec` when the session itself failed, as ssh uses.
pub const EXEC_SESSION_FAILED: i32 = 255;

async fn open_session(ctx: &Context, id: &EnvironmentId) -> anyhow::Result<CreateSessionOutput> {
    ctx.client
        .create_session(&CreateSessionInput::new(id.clone()))
        .await
        .api()
}

/// Opens a new shell session in `id` and connects its data channel.
pub(crate) async fn shell_session(ctx: &Context, id: &EnvironmentId) -> anyhow::Result<Session> {
    let session = open_session(ctx, id).await?;
    Session::connect(ConnectOptions::new(session.stream_url, session.token_value))
        .await
        .context("could not open the session's data channel")
}

/// What `exec -- ARGS` runs: one argument is a shell command line, run as
/// written (`exec -- 'cat > f'`, as `ssh host 'cmd'`); several are a
/// program and its arguments, each passed as is (`exec -- sh -c 'exit 7'`
/// runs `sh` with two arguments, `exec -- echo "it's"` prints it's).
fn remote_command(args: &[String]) -> String {
    match args {
        [line] => line.clone(),
        argv => argv
            .iter()
            .map(|a| cloudshell_ssm::transfer::shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

pub async fn exec(ctx: &Context, args: &ExecArgs) -> anyhow::Result<i32> {
    let id = if args.start {
        crate::commands::ensure_running(ctx, &args.env, args.wait_timeout).await?
    } else {
        crate::commands::resolve(&ctx.client, &args.env).await?
    };
    let connected = shell_session(ctx, &id).await?;
    let command = remote_command(&args.command);
    let stdin = (!std::io::stdin().is_terminal()).then(tokio::io::stdin);
    match run_command(connected, &command, stdin, tokio::io::stdout()).await {
        Ok(code) => Ok(code),
        Err(ExecError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => {
            eprintln!("cloudshell: error: {e:#}");
            Ok(EXEC_SESSION_FAILED)
        }
    }
}

pub async fn connect(ctx: &Context, args: &ConnectArgs) -> anyhow::Result<i32> {
    let id = ensure_running(ctx, &args.env, args.wait_timeout).await?;
    let session = open_session(ctx, &id).await?;
    if args.ssm_plugin {
        return run_plugin(ctx, &id, &session).await;
    }
    let credentials = if args.inject_credentials {
        Some(
            ctx.client
                .resolved_credentials()
                .await
                .map_err(anyhow::Error::new)?,
        )
    } else {
        None
    };
    let session_id = session.session_id.clone();
    let Session { writer, mut reader } =
        Session::connect(ConnectOptions::new(session.stream_url, session.token_value))
            .await
            .context("could not open the session's data channel")?;

    let _raw = RawMode::enable()?;
    send_size(&writer).await;
    // Credentials go in two steps: first echo is turned off (and history told
    // to skip lines starting with a space); only once the shell says so is
    // the export line typed, so neither the terminal nor readline echoes it.
    let region = ctx.client.config().region().as_str();
    let mut pending_credentials = credentials.as_ref().map(|c| credentials_line(c, region));
    let mut awaiting_ready = pending_credentials.is_some();
    // Marks the end of the set-up in the shell's output: printable, as a
    // Console (tmux) session drops control bytes from what it renders, and
    // typed in two pieces, so the line's own echo cannot match it.
    let nonce = format!("{:016x}", rand::random::<u64>());
    let ready_mark = format!("cloudshell-ready-{nonce}").into_bytes();
    if awaiting_ready {
        writer
            .input(
                format!(
                    " HISTCONTROL=ignorespace:$HISTCONTROL; stty -echo; printf '%s-%s' cloudshell-ready {nonce}\r"
                )
                .into_bytes(),
            )
            .await?;
    }

    let mut resized = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .context("could not watch for terminal resizes")?;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 4096];
    let mut escape = EscapeFilter::default();
    let mut stdout = std::io::stdout();
    let mut pending = Vec::new();
    let message = loop {
        tokio::select! {
            event = reader.next() => match event {
                Some(Event::Data { payload_type: PayloadType::OUTPUT | PayloadType::STDERR, data }) => {
                    let data = if awaiting_ready {
                        // Hide the set-up's marker from the screen.
                        pending.extend_from_slice(&data);
                        match find(&pending, &ready_mark) {
                            Some(at) => {
                                awaiting_ready = false;
                                if let Some(line) = pending_credentials.take() {
                                    writer.input(line.into_bytes()).await?;
                                }
                                let mut shown = pending[..at].to_vec();
                                shown.extend_from_slice(&pending[at + ready_mark.len()..]);
                                pending.clear();
                                shown
                            }
                            None => continue,
                        }
                    } else {
                        data
                    };
                    stdout.write_all(&data)?;
                    stdout.flush()?;
                }
                Some(Event::Closed(closed)) => break if closed.output.is_empty() {
                    format!("Session {session_id} closed.")
                } else {
                    format!("Session {session_id} closed: {}", closed.output)
                },
                Some(_) => {}
                None => {
                    break match reader.finish().await {
                        Ok(()) => format!("Session {session_id} ended."),
                        Err(e) => format!("Session {session_id} lost: {e}"),
                    };
                }
            },
            n = stdin.read(&mut buf) => {
                let n = n.context("could not read the terminal")?;
                if n == 0 {
                    break "Input closed; leaving the session.".to_owned();
                }
                let (forward, leave) = escape.feed(&buf[..n]);
                if !forward.is_empty() {
                    writer.input(forward).await?;
                }
                if leave {
                    break format!("Left session {session_id} (~.).");
                }
            }
            _ = resized.recv() => send_size(&writer).await,
        }
    };
    drop(_raw);
    eprintln!("\r\n{message}");
    Ok(0)
}

async fn send_size(writer: &SessionWriter) {
    // A terminal that cannot tell its size gets the plugin's fallback.
    let (cols, rows) = crossterm::terminal::size().unwrap_or((300, 100));
    let _ = writer.resize(cols, rows).await;
}

/// The export line for the remote shell; values single-quoted for the shell.
fn credentials_line(c: &cloudshell::Credentials, region: &str) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\'', r"'\''"));
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", c.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", c.secret_access_key().to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("AWS_REGION", region.to_owned()),
    ];
    if let Some(token) = c.session_token() {
        vars.push(("AWS_SESSION_TOKEN", token.to_owned()));
    }
    let assignments: Vec<String> = vars
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    let names: Vec<&str> = vars.iter().map(|(k, _)| *k).collect();
    // Leading space: kept out of history by the HISTCONTROL set just before.
    format!(
        " export {}; readonly {}; stty echo\r",
        assignments.join(" "),
        names.join(" ")
    )
}

/// Hands the session to AWS's session-manager-plugin, as `aws ssm
/// start-session` does: its seven-argument form, so that after a dropped
/// socket it asks SSM's `ResumeSession` at the right endpoint, with this
/// command's own credentials, for a token to redial with.
async fn run_plugin(
    ctx: &Context,
    id: &EnvironmentId,
    session: &CreateSessionOutput,
) -> anyhow::Result<i32> {
    let config = ctx.client.config();
    let credentials = ctx
        .client
        .resolved_credentials()
        .await
        .map_err(anyhow::Error::new)?;
    let response = serde_json::json!({
        "SessionId": session.session_id,
        "StreamUrl": session.stream_url,
        "TokenValue": session.token_value,
    });
    let parameters = serde_json::json!({ "Target": id.as_str() });
    let ssm_endpoint = std::env::var("AWS_ENDPOINT_URL_SSM")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| config.ssm_endpoint());
    let mut plugin = tokio::process::Command::new("session-manager-plugin");
    plugin
        .arg(response.to_string())
        .arg(config.region().as_str())
        .arg("StartSession")
        // No profile: the credentials below are the ones to use.
        .arg("")
        .arg(parameters.to_string())
        .arg(&ssm_endpoint)
        .env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env_remove("AWS_PROFILE");
    match credentials.session_token() {
        Some(token) => plugin.env("AWS_SESSION_TOKEN", token),
        None => plugin.env_remove("AWS_SESSION_TOKEN"),
    };
    // Ctrl-C, Ctrl-\ and Ctrl-Z at the terminal signal this process too
    // (it shares the plugin's process group), and the plugin turns them into
    // keystrokes for the remote shell: this process must survive them, or
    // its exit hangs the plugin up with it. A handler, unlike SIG_IGN, is
    // not inherited, so the plugin still receives them.
    use tokio::signal::unix::{SignalKind, signal};
    let _held: Vec<_> = [
        SignalKind::interrupt(),
        SignalKind::quit(),
        SignalKind::from_raw(rustix::process::Signal::TSTP.as_raw()),
    ]
    .into_iter()
    .map(signal)
    .collect::<Result<_, _>>()
    .context("could not hold the terminal's signals for session-manager-plugin")?;
    let status = plugin.status().await;
    match status {
        Ok(s) => Ok(s.code().unwrap_or(1)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "session-manager-plugin is not installed; drop --ssm-plugin to use the built-in client"
            )
        }
        Err(e) => Err(e).context("could not run session-manager-plugin"),
    }
}

/// Puts the terminal in raw mode and restores it when dropped, on every exit path.
struct RawMode {
    active: bool,
}

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        if !std::io::stdin().is_terminal() {
            return Ok(Self { active: false });
        }
        crossterm::terminal::enable_raw_mode().context("could not put the terminal in raw mode")?;
        Ok(Self { active: true })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if self.active {
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

/// ssh-style escapes: `~.` at the start of a line leaves, `~~` sends one `~`.
#[derive(Debug)]
struct EscapeFilter {
    at_line_start: bool,
    tilde: bool,
}

impl Default for EscapeFilter {
    fn default() -> Self {
        Self {
            at_line_start: true,
            tilde: false,
        }
    }
}

impl EscapeFilter {
    /// Returns the bytes to forward and whether to leave.
    fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len() + 1);
        for &b in input {
            if self.tilde {
                self.tilde = false;
                match b {
                    b'.' => return (out, true),
                    b'~' => {
                        out.push(b'~');
                        self.at_line_start = false;
                        continue;
                    }
                    _ => out.push(b'~'),
                }
            } else if self.at_line_start && b == b'~' {
                self.tilde = true;
                continue;
            }
            out.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        (out, false)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_argument_is_a_command_line_several_are_argv() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(remote_command(&args(&["cat > f"])), "cat > f");
        assert_eq!(
            remote_command(&args(&["sh", "-c", "exit 7"])),
            "'sh' '-c' 'exit 7'"
        );
        assert_eq!(
            remote_command(&args(&["echo", "it's"])),
            r"'echo' 'it'\''s'"
        );
    }

    #[test]
    fn escape_sequences() {
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(f.feed(b"~."), (Vec::new(), true));
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"~~x"), (b"~x".to_vec(), false));
        let mut f = EscapeFilter::default();
        assert_eq!(
            f.feed(b"a~.b"),
            (b"a~.b".to_vec(), false),
            "only at line start"
        );
        let mut f = EscapeFilter::default();
        assert_eq!(f.feed(b"~"), (Vec::new(), false));
        assert_eq!(
            f.feed(b"q"),
            (b"~q".to_vec(), false),
            "a held ~ is released"
        );
    }

    #[test]
    fn credential_values_are_quoted() {
        let c = cloudshell::Credentials::new("AK", "it's", Some("tok".into()), None, "t");
        let line = credentials_line(&c, "eu-west-1");
        assert!(line.starts_with(' '));
        assert!(line.contains(r"AWS_SECRET_ACCESS_KEY='it'\''s'"));
        assert!(line.contains("readonly AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_REGION AWS_SESSION_TOKEN"));
    }
}
