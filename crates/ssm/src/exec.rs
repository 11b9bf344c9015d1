//! Running one command through an interactive shell session, byte-exact.
//!
//! CloudShell offers only interactive shell sessions, so a non-interactive
//! command is typed into the shell, framed by markers:
//!
//! ```text
//! stty -echo -opost; printf '\036S%s\036' NONCE; INPUT { eval "$(printf %s CMD64 | base64 -d)"; }; printf '\036E%s:%d\036' NONCE $?; exit
//! ```
//!
//! The command travels base64-encoded and is decoded by the shell itself,
//! so no quote, newline or control byte in it is ever typed: an unbalanced
//! quote cannot leave the shell waiting for more, and a newline cannot end
//! the typed line early.
//!
//! A Console session (`SessionType: TMUX`) runs the shell inside tmux,
//! which re-renders everything the command prints (escape sequences,
//! wrapping at the pane's width, frames skipped when the far end is slow):
//! no byte-exact stream survives that. So before the command, one line is
//! typed that, inside tmux, detaches the tmux client and has it run a shell
//! in its place on the session's own terminal (`tmux detach-client -E`,
//! the tmux session itself killed), and in a plain session does nothing;
//! both then print a ready marker. Only once it is seen is the command's
//! line typed (tmux's client discards pending input as it leaves).
//!
//! Everything before the start marker (the prompt, the echoed line) is
//! discarded; everything up to the end marker is the command's output; the
//! end marker carries its exit status. `-opost` stops the terminal turning
//! `\n` into `\r\n`, so output bytes arrive unchanged; the typed line holds
//! the markers only as `printf` escapes, so they cannot be matched in its
//! echo. Standard input, when there is any, travels base64-encoded in lines
//! (the terminal stays canonical, so a NUL or ^C in the data cannot act on
//! it) and ends with ^D on an empty line; `base64 -d` turns it back into
//! bytes. A pty merges standard error into standard output.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::channel::Event;
use crate::codec::PayloadType;
use crate::driver::{DriverError, Session, SessionWriter};

/// Record separator: starts and ends both markers.
const RS: u8 = 0x1e;

/// Typed first: leaves tmux if the shell runs in it (see the module
/// notes), then prints [`READY`]. The marker is typed only as `printf`
/// escapes, so the line's echo cannot match it.
pub const LEAVE_TMUX: &str = concat!(
    " if [ -n \"$TMUX\" ]; then ",
    "s=$(tmux display-message -p '#S'); k=${TMUX%%,*}; ",
    "tmux detach-client -E \"tmux -S '$k' kill-session -t '$s' 2>/dev/null; printf '\\036T\\036'; exec \\\"\\${SHELL:-bash}\\\"\"; ",
    "else printf '\\036T\\036'; fi\r"
);

/// What [`LEAVE_TMUX`] prints once the shell is on the session's own terminal.
pub const READY: &[u8] = b"\x1eT\x1e";
/// Bytes of stdin per base64 line (76 encoded characters, well under the
/// 4095-byte canonical-mode line limit).
const STDIN_CHUNK: usize = 57;

/// The line to type and the markers to look for.
#[derive(Debug, Clone)]
pub struct ExecScript {
    line: String,
    start: Vec<u8>,
    end_prefix: Vec<u8>,
}

impl ExecScript {
    /// Wraps `command` (shell syntax) with a fresh random nonce. With
    /// `stdin`, the command reads what [`encode_stdin`] produces; without,
    /// it reads `/dev/null`. The exit status is the command's: it is the last
    /// element of the pipeline.
    pub fn new(command: &str, stdin: bool) -> Self {
        Self::with_nonce(command, stdin, &format!("{:032x}", rand::random::<u128>()))
    }

    fn with_nonce(command: &str, stdin: bool, nonce: &str) -> Self {
        let (before, after) = if stdin {
            ("base64 -d | ", "")
        } else {
            ("", " </dev/null")
        };
        let encoded = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(command)
        };
        // `eval` in the session's shell, not `sh -c`: the command sees the
        // same shell (functions, `cd`) it would if typed.
        let command = format!("eval \"$(printf %s {encoded} | base64 -d)\"");
        // A leading space keeps the line out of history where HISTCONTROL
        // asks for it, and with no HISTFILE nothing is saved at exit; `exit`
        // ends the session when the command is done.
        let line = format!(
            " unset HISTFILE; stty -echo -opost 2>/dev/null; printf '\\036S%s\\036' {nonce}; {before}{{ {command}; }}{after}; printf '\\036E%s:%d\\036' {nonce} $?; exit\r"
        );
        Self {
            line,
            start: [&[RS, b'S'], nonce.as_bytes(), &[RS]].concat(),
            end_prefix: [&[RS, b'E'], nonce.as_bytes(), b":"].concat(),
        }
    }

    /// The bytes to type into the shell.
    pub fn line(&self) -> &[u8] {
        self.line.as_bytes()
    }

    /// A scanner for the session's output.
    pub fn scanner(&self) -> OutputScanner {
        OutputScanner {
            start: self.start.clone(),
            end_prefix: self.end_prefix.clone(),
            state: ScanState::BeforeStart,
            buf: Vec::new(),
            preamble: Vec::new(),
        }
    }
}

/// How much of what the shell printed before the command started is kept,
/// to say why a session that ended early did.
const PREAMBLE_KEPT: usize = 400;

/// The longest standard-input line, in bytes before base64: 3,000 bytes make
/// 4,000 characters, under the 4,095 a Linux terminal holds in one canonical
/// line (`N_TTY_BUF_SIZE` less one for the newline).
pub const MAX_STDIN_LINE: usize = 3000;

/// Encodes a piece of standard input as base64 lines.
pub fn encode_stdin(data: &[u8]) -> Vec<u8> {
    encode_stdin_lines(data, STDIN_CHUNK)
}

/// Encodes a piece of standard input as base64 lines of `line_bytes` bytes.
fn encode_stdin_lines(data: &[u8], line_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / line_bytes + 4);
    for chunk in data.chunks(line_bytes) {
        base64_into(chunk, &mut out);
        out.push(b'\n');
    }
    out
}

/// Ends standard input: ^D on an empty line is end-of-file in canonical mode.
pub const STDIN_EOF: &[u8] = &[0x04];

fn base64_into(data: &[u8], out: &mut Vec<u8>) {
    use base64::Engine as _;
    let start = out.len();
    out.resize(
        start + base64::encoded_len(data.len(), true).unwrap_or(0),
        0,
    );
    // The slice was sized by encoded_len, so encoding always fits.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    BeforeStart,
    Running,
    /// Reading the exit status digits after the end prefix.
    Status,
    Done(i32),
}

/// What the output scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEvent {
    /// The command's output bytes.
    Output(Vec<u8>),
    /// The command exited with this status.
    Exited(i32),
}

/// Splits a shell session's output into the command's output and its exit status.
#[derive(Debug, Clone)]
pub struct OutputScanner {
    start: Vec<u8>,
    end_prefix: Vec<u8>,
    state: ScanState,
    buf: Vec<u8>,
    /// The last bytes printed before the start marker (prompt, echo, or
    /// whatever a startup file said before the shell went away).
    preamble: Vec<u8>,
}

impl OutputScanner {
    /// True once the start marker was seen (stdin may flow from then on).
    pub fn started(&self) -> bool {
        !matches!(self.state, ScanState::BeforeStart)
    }

    /// The exit status, once seen.
    pub fn exit_status(&self) -> Option<i32> {
        match self.state {
            ScanState::Done(code) => Some(code),
            _ => None,
        }
    }

    /// Feeds session output; returns the command's output and exit, in order.
    pub fn feed(&mut self, data: &[u8]) -> Vec<ScanEvent> {
        let mut events = Vec::new();
        if self.state == ScanState::BeforeStart {
            self.preamble.extend_from_slice(data);
            keep_tail(&mut self.preamble, PREAMBLE_KEPT);
        }
        self.buf.extend_from_slice(data);
        loop {
            match self.state {
                ScanState::BeforeStart => match find(&self.buf, &self.start) {
                    Some(at) => {
                        self.buf.drain(..at + self.start.len());
                        self.state = ScanState::Running;
                    }
                    None => {
                        keep_tail(&mut self.buf, self.start.len() - 1);
                        break;
                    }
                },
                ScanState::Running => match find(&self.buf, &self.end_prefix) {
                    Some(at) => {
                        if at > 0 {
                            events.push(ScanEvent::Output(self.buf[..at].to_vec()));
                        }
                        self.buf.drain(..at + self.end_prefix.len());
                        self.state = ScanState::Status;
                    }
                    None => {
                        // Hold back what could be the start of the end marker.
                        let hold = partial_suffix(&self.buf, &self.end_prefix);
                        let emit = self.buf.len() - hold;
                        if emit > 0 {
                            events.push(ScanEvent::Output(self.buf.drain(..emit).collect()));
                        }
                        break;
                    }
                },
                ScanState::Status => match self.buf.iter().position(|b| *b == RS) {
                    Some(at) => {
                        let code = std::str::from_utf8(&self.buf[..at])
                            .ok()
                            .and_then(|s| s.parse::<i32>().ok())
                            .unwrap_or(-1);
                        self.buf.clear();
                        self.state = ScanState::Done(code);
                        events.push(ScanEvent::Exited(code));
                    }
                    None => {
                        // A status is a few digits; anything longer is not one.
                        if self.buf.len() > 16 {
                            self.state = ScanState::Done(-1);
                            events.push(ScanEvent::Exited(-1));
                        }
                        break;
                    }
                },
                ScanState::Done(_) => {
                    self.buf.clear();
                    break;
                }
            }
        }
        events
    }

    /// Why the session ended early, in words: whether the command had
    /// started, what the agent said, and, if it never started, the last
    /// thing the shell printed (a startup file that exits, a shell that
    /// cannot run the line).
    pub fn ended_early(&self, agent_said: &str) -> String {
        early_end(self.started(), agent_said, &self.preamble)
    }

    /// Feeds a channel event; only terminal output matters.
    pub fn feed_event(&mut self, event: &Event) -> Vec<ScanEvent> {
        match event {
            Event::Data {
                payload_type: PayloadType::OUTPUT | PayloadType::STDERR,
                data,
            } => self.feed(data),
            _ => Vec::new(),
        }
    }
}

/// Says why a session ended early: whether the command had started, what
/// the agent said, and, if it never started, the shell's last output.
fn early_end(started: bool, agent_said: &str, preamble: &[u8]) -> String {
    let mut why = if started {
        "while the command ran".to_owned()
    } else {
        "before the command started".to_owned()
    };
    if !agent_said.is_empty() {
        why.push_str(&format!(" ({agent_said})"));
    }
    if !started {
        let shown = String::from_utf8_lossy(preamble);
        let shown = shown.trim();
        if shown.is_empty() {
            why.push_str("; the shell printed nothing");
        } else {
            why.push_str(&format!("; the shell's last words: {shown:?}"));
        }
    }
    why
}

/// Why a command's outcome is unknown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The data channel failed.
    #[error(transparent)]
    Channel(#[from] DriverError),
    /// The session ended before the command reported its exit status.
    #[error("the session ended before the command finished{}", if .0.is_empty() { String::new() } else { format!(": {}", .0) })]
    EndedEarly(String),
    /// Local input or output failed.
    #[error("local input or output failed")]
    Io(#[from] std::io::Error),
}

/// What a running command produced next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// Output bytes, in order.
    Output(Vec<u8>),
    /// The command exited with this status; nothing follows.
    Exited(i32),
}

/// A command running in a shell session, read as a stream of
/// [`ExecOutput`]s. Dropping it ends the session.
pub struct Exec {
    writer: SessionWriter,
    /// `None` once the session has ended.
    reader: Option<crate::driver::SessionReader>,
    /// What the agent said when it closed the channel.
    closed: Option<String>,
    scanner: OutputScanner,
    stdin: Option<Box<dyn AsyncRead + Unpin + Send>>,
    pump: Option<tokio::task::JoinHandle<Result<(), ExecError>>>,
    pending: std::collections::VecDeque<ScanEvent>,
    line_bytes: usize,
}

impl Exec {
    /// Types `command` into the shell of `session`. With `stdin`, its bytes
    /// are forwarded once the command runs, then end-of-file.
    pub async fn start<R>(
        session: Session,
        command: &str,
        stdin: Option<R>,
    ) -> Result<Self, ExecError>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let script = ExecScript::new(command, stdin.is_some());
        let Session { writer, mut reader } = session;
        leave_tmux(&writer, &mut reader).await?;
        writer.input(script.line().to_vec()).await?;
        Ok(Self {
            writer,
            reader: Some(reader),
            closed: None,
            scanner: script.scanner(),
            stdin: stdin.map(|r| Box::new(r) as Box<dyn AsyncRead + Unpin + Send>),
            pump: None,
            pending: std::collections::VecDeque::new(),
            line_bytes: STDIN_CHUNK,
        })
    }

    /// Sends standard input in lines of `bytes` bytes (before base64), at most
    /// [`MAX_STDIN_LINE`]. Longer lines cost fewer reads on the far side.
    pub fn stdin_line_bytes(mut self, bytes: usize) -> Self {
        self.line_bytes = (bytes.clamp(3, MAX_STDIN_LINE) / 3) * 3;
        self
    }

    /// The next piece of output, or the exit status. After
    /// [`ExecOutput::Exited`] the session is over.
    pub async fn next(&mut self) -> Result<ExecOutput, ExecError> {
        loop {
            if let Some(found) = self.pending.pop_front() {
                return Ok(match found {
                    ScanEvent::Output(bytes) => ExecOutput::Output(bytes),
                    ScanEvent::Exited(code) => {
                        if let Some(p) = self.pump.take() {
                            p.abort();
                        }
                        ExecOutput::Exited(code)
                    }
                });
            }
            if self.scanner.exit_status().is_some() {
                return Err(ExecError::EndedEarly(
                    "the command has already exited".into(),
                ));
            }
            if let Some(output) = self.closed.take() {
                return Err(ExecError::EndedEarly(self.scanner.ended_early(&output)));
            }
            let Some(reader) = self.reader.as_mut() else {
                return Err(ExecError::EndedEarly(self.scanner.ended_early("")));
            };
            let event = match self.pump.as_mut() {
                Some(pump) => tokio::select! {
                    event = reader.next() => event,
                    done = pump => {
                        self.pump = None;
                        match done {
                            Ok(Ok(())) => continue,
                            Ok(Err(e)) => return Err(e),
                            Err(e) => return Err(ExecError::Io(std::io::Error::other(e))),
                        }
                    }
                },
                None => reader.next().await,
            };
            let Some(event) = event else {
                if let Some(reader) = self.reader.take() {
                    reader.finish().await?;
                }
                return Err(ExecError::EndedEarly(self.scanner.ended_early("")));
            };
            self.pending.extend(self.scanner.feed_event(&event));
            // Input may flow only once the terminal is in the command's mode.
            if self.scanner.started()
                && let Some(input) = self.stdin.take()
            {
                self.pump = Some(tokio::spawn(pump_stdin(
                    input,
                    self.writer.clone(),
                    self.line_bytes,
                )));
            }
            if let Event::Closed(closed) = event {
                self.closed = Some(closed.output);
            }
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if let Some(p) = self.pump.take() {
            p.abort();
        }
    }
}

/// Runs `command` through the shell of `session`, copying its output to
/// `stdout` byte for byte and, when given, `stdin` to its standard input.
/// Returns its exit status.
pub async fn run_command<R, W>(
    session: Session,
    command: &str,
    stdin: Option<R>,
    mut stdout: W,
) -> Result<i32, ExecError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let mut exec = Exec::start(session, command, stdin).await?;
    loop {
        match exec.next().await? {
            ExecOutput::Output(bytes) => stdout.write_all(&bytes).await?,
            ExecOutput::Exited(code) => {
                stdout.flush().await?;
                return Ok(code);
            }
        }
    }
}

/// Runs `command` and collects its whole output (for small outputs only).
pub async fn capture_command(session: Session, command: &str) -> Result<(i32, Vec<u8>), ExecError> {
    let mut out = Vec::new();
    let code = run_command(session, command, None::<tokio::io::Empty>, &mut out).await?;
    Ok((code, out))
}

/// Types [`LEAVE_TMUX`] and waits for [`READY`].
async fn leave_tmux(
    writer: &SessionWriter,
    reader: &mut crate::driver::SessionReader,
) -> Result<(), ExecError> {
    writer.input(LEAVE_TMUX.as_bytes().to_vec()).await?;
    let mut seen: Vec<u8> = Vec::new();
    loop {
        match reader.next().await {
            Some(Event::Data {
                payload_type: PayloadType::OUTPUT | PayloadType::STDERR,
                data,
            }) => {
                seen.extend_from_slice(&data);
                if find(&seen, READY).is_some() {
                    return Ok(());
                }
                keep_tail(&mut seen, PREAMBLE_KEPT);
            }
            Some(Event::Closed(closed)) => {
                return Err(ExecError::EndedEarly(early_end(
                    false,
                    &closed.output,
                    &seen,
                )));
            }
            Some(_) => {}
            None => {
                return Err(ExecError::EndedEarly(
                    "the data channel ended before the shell was ready".to_owned(),
                ));
            }
        }
    }
}

/// Copies local input to the command as base64 lines, then end-of-file.
async fn pump_stdin<R: AsyncRead + Unpin + ?Sized>(
    mut input: Box<R>,
    writer: SessionWriter,
    line_bytes: usize,
) -> Result<(), ExecError> {
    let mut buf = vec![0u8; line_bytes * 64];
    let mut filled = 0;
    loop {
        let n = input.read(&mut buf[filled..]).await?;
        filled += n;
        // Encode whole lines only, so padding appears only at the very end.
        let whole = if n == 0 {
            filled
        } else {
            filled - filled % line_bytes
        };
        if whole > 0 {
            writer
                .input(encode_stdin_lines(&buf[..whole], line_bytes))
                .await?;
            buf.copy_within(whole..filled, 0);
            filled -= whole;
        }
        if n == 0 {
            writer.input(STDIN_EOF.to_vec()).await?;
            return Ok(());
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn keep_tail(buf: &mut Vec<u8>, n: usize) {
    if buf.len() > n {
        buf.drain(..buf.len() - n);
    }
}

/// Length of the longest suffix of `buf` that is a proper prefix of `marker`.
fn partial_suffix(buf: &[u8], marker: &[u8]) -> usize {
    let max = marker.len().saturating_sub(1).min(buf.len());
    (1..=max)
        .rev()
        .find(|&n| buf[buf.len() - n..] == marker[..n])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> ExecScript {
        ExecScript::with_nonce("echo hi", false, "abc")
    }

    fn collect(scanner: &mut OutputScanner, chunks: &[&[u8]]) -> (Vec<u8>, Option<i32>) {
        let mut out = Vec::new();
        let mut code = None;
        for c in chunks {
            for e in scanner.feed(c) {
                match e {
                    ScanEvent::Output(b) => out.extend(b),
                    ScanEvent::Exited(c) => code = Some(c),
                }
            }
        }
        (out, code)
    }

    #[test]
    fn the_command_is_never_typed_raw() {
        // Quotes, a newline, a control byte: none reaches the typed line.
        let command = "echo \"it's\"\nprintf '\\001'; exit 7";
        let s = ExecScript::with_nonce(command, false, "abc");
        let line = String::from_utf8(s.line().to_vec()).unwrap();
        assert_eq!(line.matches('\r').count(), 1, "one typed line: {line:?}");
        assert!(!line.contains("it's") && !line.contains('\n'), "{line:?}");
        let encoded = line
            .split("printf %s ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, command.as_bytes());
    }

    #[test]
    fn an_early_end_says_whether_the_command_started_and_what_the_shell_said() {
        let s = script();
        let mut never = s.scanner();
        collect(&mut never, &[b"bash: .bashrc: line 3: ", b"oops\r\n"]);
        let why = never.ended_early("");
        assert!(why.starts_with("before the command started"), "{why}");
        assert!(why.contains("line 3: oops"), "{why}");

        let silent = s.scanner();
        assert!(silent.ended_early("").contains("printed nothing"));

        let mut started = s.scanner();
        collect(&mut started, &[b"$ \x1eSabc\x1epartial out"]);
        let why = started.ended_early("session deleted");
        assert_eq!(why, "while the command ran (session deleted)");

        // Only the tail is kept, however much the shell printed.
        let mut chatty = s.scanner();
        collect(&mut chatty, &[&vec![b'x'; 10_000]]);
        assert!(chatty.ended_early("").len() < PREAMBLE_KEPT + 100);
    }

    #[test]
    fn the_typed_line_does_not_contain_the_markers() {
        let s = script();
        assert!(find(s.line(), &s.start).is_none());
        assert!(find(s.line(), &s.end_prefix).is_none());
        assert!(s.line().ends_with(b"exit\r"));
    }

    #[test]
    fn output_between_markers_whatever_the_chunking() {
        let stream =
            b"prompt$ echo stuff\r\n\x1eSabc\x1ehello\x00\xff\nworld\x1eEabc:42\x1e\r\nlogout";
        for split in 1..stream.len() {
            let mut scanner = script().scanner();
            let (out, code) = collect(&mut scanner, &[&stream[..split], &stream[split..]]);
            assert_eq!(out, b"hello\x00\xff\nworld", "split at {split}");
            assert_eq!(code, Some(42), "split at {split}");
        }
        let mut scanner = script().scanner();
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            collect(&mut scanner, &bytes),
            (b"hello\x00\xff\nworld".to_vec(), Some(42))
        );
    }

    #[test]
    fn a_lone_record_separator_in_output_is_output() {
        let mut scanner = script().scanner();
        let (out, code) = collect(&mut scanner, &[b"\x1eSabc\x1ea\x1eEab\x1eEabc:0\x1e"]);
        assert_eq!(out, b"a\x1eEab");
        assert_eq!(code, Some(0));
    }

    #[test]
    fn stdin_is_base64_lines() {
        assert_eq!(encode_stdin(b"Man"), b"TWFu\n");
        assert_eq!(encode_stdin(b"Ma"), b"TWE=\n");
        assert_eq!(encode_stdin(b"M"), b"TQ==\n");
        let long = encode_stdin(&[0u8; 100]);
        assert_eq!(long.iter().filter(|b| **b == b'\n').count(), 2);
        assert!(
            long.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=\n".contains(b))
        );
    }
}
