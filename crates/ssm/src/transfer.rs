//! Copying files and directory trees through a shell session.
//!
//! CloudShell offers no file API a client can drive end to end, but every
//! environment has a shell with coreutils and `tar`. A copy is three short
//! commands, each in its own session (see [`crate::exec`]):
//!
//! 1. **probe**: resolve the remote path (relative to the home directory, or
//!    absolute; `~/` accepted), check it, and report what is already there:
//!    for an upload a partial temporary file (its size and SHA-256) and the
//!    free space; for a download the file's size, mode, time, and the SHA-256
//!    of the prefix the local side already holds.
//! 2. **stream**: the bytes, from the resume offset on. Uploads travel as
//!    base64 lines typed into the terminal and are appended to
//!    `DIR/.NAME.cloudshell-part`; the far side hashes exactly what it wrote
//!    (`tee` into a FIFO read by `sha256sum`) and reports it. Downloads come
//!    back raw (`stty -opost`), followed by a fixed-length trailer with the
//!    SHA-256 of exactly the bytes sent.
//! 3. **commit** (uploads): `mv` the verified temporary file or tree onto the
//!    final name, then set its mode and time. An interrupted copy therefore
//!    never leaves a partial file under the final name, and the partial
//!    temporary file lets the next run resume where the last one stopped,
//!    once the SHA-256 of its prefix matches the local file's.
//!
//! The command texts and the parsing of their output are plain functions
//! ([`UploadPlan`], [`DownloadPlan`], [`parse_upload_probe`], ...); the async
//! functions at the end run them over a [`Session`].

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::driver::Session;
use crate::exec::{Exec, ExecError, ExecOutput, MAX_STDIN_LINE, capture_command};

/// Marks the download trailer and the upload report.
const RS: u8 = 0x1e;
/// `RS 'H' <64 hex> RS`: the SHA-256 after a download's bytes.
pub const DOWNLOAD_TRAILER_LEN: usize = 67;
/// Suffix of temporary names: `DIR/.NAME.cloudshell-part`.
pub const PART_SUFFIX: &str = ".cloudshell-part";

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_digest(&digest::digest(&digest::SHA256, data))
    }

    fn from_digest(d: &digest::Digest) -> Self {
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// Lower-case hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// An incremental SHA-256 (cloneable, so a prefix's digest can be taken on
/// the way through).
#[derive(Clone)]
pub struct Sha256Hasher(digest::Context);

impl Default for Sha256Hasher {
    fn default() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }
}

impl Sha256Hasher {
    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything added.
    pub fn finish(self) -> Sha256 {
        Sha256::from_digest(&self.0.finish())
    }
}

/// What the remote side refused, in terms a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The directory that would hold the file does not exist.
    #[error("the remote directory does not exist")]
    NoDirectory,
    /// The file cannot be created there.
    #[error("the remote path is not writable{}", detail(.0))]
    NotWritable(String),
    /// A directory is in the way of a file.
    #[error("the remote path is a directory")]
    IsDirectory,
    /// A tree copy never merges into an existing path.
    #[error("the remote path already exists")]
    Exists,
    /// Nothing at the remote path.
    #[error("the remote path does not exist")]
    Missing,
    /// The remote file cannot be read.
    #[error("the remote file is not readable")]
    NotReadable,
    /// Neither a regular file nor a directory.
    #[error("the remote path is not a regular file or a directory")]
    NotRegular,
    /// The presigned route reaches only the home directory.
    #[error("the remote path is outside the home directory")]
    OutsideHome,
    /// The home directory (or its file system) has no room.
    #[error("no space left in the environment: {0}")]
    NoSpace(String),
    /// A command failed in a way not foreseen; its output says how.
    #[error("the remote command failed{}", detail(.0))]
    Failed(String),
}

/// Runs `cmd` in a subshell, so its `exit`s end it and not the session's
/// shell (which still has to print the end marker).
fn subshell(cmd: String) -> String {
    format!("( {cmd} )")
}

fn detail(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// Why a copy through the shell failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The session or the command failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The remote side refused.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The two ends disagree on what was sent.
    #[error(
        "the SHA-256 of the copy does not match (sent {local}, received {remote}); nothing was replaced, try again"
    )]
    Mismatch {
        /// Computed on this side.
        local: Sha256,
        /// Computed on the far side.
        remote: Sha256,
    },
    /// The remote output did not have the expected shape.
    #[error("unexpected reply from the remote shell: {0}")]
    Protocol(String),
    /// Local input or output failed.
    #[error("local input or output failed")]
    Io(#[from] std::io::Error),
}

/// Quotes `s` for a POSIX shell: `'...'`, with `'` as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Sets `p` to the remote path relative to the home directory, as given:
/// `~` and `~/x` name the home and paths in it, empty means the home.
fn resolve_prelude(remote: &str) -> String {
    format!(
        "cd || exit 90; set -o pipefail; p={}; case $p in '~'|'') p=. ;; '~/'*) p=${{p#??}} ;; esac; ",
        shell_quote(remote)
    )
}

/// The temporary name next to `$p`: `$d/.$n.cloudshell-part`.
const TEMP_NAME: &str =
    r#"d=$(dirname -- "$p"); n=$(basename -- "$p"); t="$d/.$n.cloudshell-part"; "#;

/// Hashes everything written to FIFO `$h/p` into `$h/s`, in the background.
const HASH_FIFO: &str =
    r#"h=$(mktemp -d) || exit 91; mkfifo "$h/p" || exit 91; sha256sum < "$h/p" > "$h/s" & "#;

/// Prints `$p` relative to the home directory, hex-encoded (any byte may be
/// in a name), or `err outside` when it is not in the home directory.
const PRINT_HOME_RELATIVE: &str = r#"case $p in /*) case $p in "$HOME"/*) p=${p#"$HOME"/} ;; *) echo 'err outside'; exit 0 ;; esac ;; esac; printf 'path %s\n' "$(printf '%s' "$p" | od -An -v -tx1 | tr -d ' \n')"; echo ok"#;

/// What is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One regular file.
    File,
    /// A directory tree, as a tar stream.
    Tree,
}

/// An upload to `remote`; `name` is the local file's name, used when
/// `remote` is an existing directory (as `cp` does).
#[derive(Debug, Clone)]
pub struct UploadPlan {
    remote: String,
    name: String,
    kind: Kind,
}

impl UploadPlan {
    /// Plans an upload of a file or tree named `name` to `remote`.
    pub fn new(remote: impl Into<String>, name: impl Into<String>, kind: Kind) -> Self {
        Self {
            remote: remote.into(),
            name: name.into(),
            kind,
        }
    }

    /// What is copied.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sets `$p` (final path), `$d`, `$n` and `$t` (temporary name).
    fn resolve(&self) -> String {
        format!(
            "{}if [ -d \"$p\" ]; then p=\"${{p%/}}/\"{}; else case $p in */) echo 'err nodir'; exit 0 ;; esac; fi; {TEMP_NAME}",
            resolve_prelude(&self.remote),
            shell_quote(&self.name)
        )
    }

    /// Resolves the final path relative to the home directory (for the
    /// presigned route, whose keys are home-relative); see [`parse_located`].
    pub fn locate_command(&self) -> String {
        subshell({
            format!(
                r#"{}[ -d "$d" ] || {{ echo 'err nodir'; exit 0; }}; if [ -d "$p" ]; then echo 'err isdir'; exit 0; fi; {PRINT_HOME_RELATIVE}"#,
                self.resolve()
            )
        })
    }

    /// Checks the target and reports a partial temporary file and free
    /// space; see [`parse_upload_probe`].
    pub fn probe_command(&self) -> String {
        subshell({
            let target = match self.kind {
                Kind::File => r#"if [ -d "$p" ]; then echo 'err isdir'; exit 0; fi; "#,
                Kind::Tree => {
                    r#"if [ -e "$p" ] || [ -L "$p" ]; then echo 'err exists'; exit 0; fi; "#
                }
            };
            let partial = match self.kind {
                // Creating the temporary file is the honest writability test
                // (`test -w` says yes to root even on a read-only mount); it
                // is removed again, so a refused copy leaves nothing behind.
                Kind::File => {
                    r#"if [ -f "$t" ]; then printf 'part %s %s\n' "$(stat -c %s -- "$t")" "$(sha256sum < "$t" | cut -c1-64)"; elif e=$( { : > "$t"; } 2>&1 ); then rm -f -- "$t"; else printf 'err notwritable %s\n' "$e"; exit 0; fi; "#
                }
                Kind::Tree => {
                    r#"rm -rf -- "$t"; if ! e=$(mkdir -- "$t" 2>&1); then printf 'err notwritable %s\n' "$e"; exit 0; fi; rmdir -- "$t"; "#
                }
            };
            format!(
                r#"{}[ -d "$d" ] || {{ echo 'err nodir'; exit 0; }}; {target}{partial}printf 'space %s %s\n' "$(df -Pk -- "$d" | awk 'NR==2{{print $4}}')" "$(du -sk ~ 2>/dev/null | cut -f1)"; echo ok"#,
                self.resolve()
            )
        })
    }

    /// Receives the stream from `offset` on (0: start afresh) and reports
    /// its SHA-256; see [`parse_upload_report`]. A failed write removes the
    /// temporary file; an interrupted one leaves it for resuming.
    pub fn stream_command(&self, offset: u64) -> String {
        subshell({
            let sink = match self.kind {
                Kind::File if offset > 0 => {
                    format!(r#"truncate -s {offset} -- "$t" && tee "$h/p" >> "$t""#)
                }
                Kind::File => r#"tee "$h/p" > "$t""#.to_owned(),
                Kind::Tree => {
                    r#"rm -rf -- "$t"; mkdir -- "$t" && tee "$h/p" | tar -x -p --no-same-owner -f - -C "$t""#
                        .to_owned()
                }
            };
            let cleanup = match self.kind {
                Kind::File => r#"rm -f -- "$t""#,
                Kind::Tree => r#"rm -rf -- "$t""#,
            };
            format!(
                r#"{}{HASH_FIFO}{sink}; s=$?; wait; printf '\036D%s\036' "$(cut -c1-64 "$h/s")"; rm -rf -- "$h"; [ $s = 0 ] || {cleanup}; exit $s"#,
                self.resolve()
            )
        })
    }

    /// Moves the verified temporary file or tree onto the final name and sets
    /// its mode (file) and modification time (seconds since the epoch).
    pub fn commit_command(&self, mode: Option<u32>, mtime: Option<i64>) -> String {
        subshell({
            let mut cmd = self.resolve();
            match self.kind {
                Kind::File => cmd.push_str(r#"mv -f -- "$t" "$p""#),
                // -T: never move into a directory that appeared meanwhile.
                Kind::Tree => cmd.push_str(r#"mv -T -- "$t" "$p""#),
            }
            if let Some(mode) = mode {
                let _ = write!(cmd, r#" && chmod {:o} -- "$p""#, mode & 0o7777);
            }
            if let Some(mtime) = mtime {
                let _ = write!(cmd, r#" && touch -m -d @{mtime} -- "$p""#);
            }
            cmd.push_str(r" && printf '\036C\036'");
            cmd
        })
    }
}

/// What an upload probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProbe {
    /// The temporary file of an earlier attempt: its size and digest.
    pub partial: Option<(u64, Sha256)>,
    /// Bytes free on the file system that will hold the file.
    pub available: Option<u64>,
    /// Bytes the home directory already holds.
    pub home_used: Option<u64>,
}

/// Parses the output of [`UploadPlan::probe_command`].
pub fn parse_upload_probe(output: &[u8]) -> Result<UploadProbe, TransferError> {
    let mut probe = UploadProbe {
        partial: None,
        available: None,
        home_used: None,
    };
    for (word, rest) in probe_lines(output)? {
        match word {
            "part" => {
                let mut it = rest.split(' ');
                let size = it.next().and_then(|s| s.parse().ok());
                let hash = it.next().and_then(Sha256::from_hex);
                if let (Some(size), Some(hash)) = (size, hash) {
                    probe.partial = Some((size, hash));
                }
            }
            "space" => {
                let mut it = rest.split(' ').map(|s| s.parse::<u64>().ok());
                probe.available = it.next().flatten().map(|kb| kb * 1024);
                probe.home_used = it.next().flatten().map(|kb| kb * 1024);
            }
            _ => {}
        }
    }
    Ok(probe)
}

/// Splits probe output into `(word, rest)` lines, turning `err ...` into a
/// [`RemoteError`] and insisting on the final `ok`.
fn probe_lines(output: &[u8]) -> Result<Vec<(&str, &str)>, TransferError> {
    let text = std::str::from_utf8(output)
        .map_err(|_| TransferError::Protocol("probe output is not UTF-8".into()))?;
    let mut lines = Vec::new();
    let mut ok = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "err" => {
                let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
                return Err(remote_error(code, msg).into());
            }
            "ok" => ok = true,
            _ => lines.push((word, rest)),
        }
    }
    if !ok {
        return Err(TransferError::Protocol(format!(
            "the probe did not finish: {}",
            text.trim()
        )));
    }
    Ok(lines)
}

fn remote_error(code: &str, msg: &str) -> RemoteError {
    let msg = msg.trim().to_owned();
    match code {
        "nodir" => RemoteError::NoDirectory,
        "notwritable" if msg.contains("No space left") || msg.contains("quota") => {
            RemoteError::NoSpace(msg)
        }
        "notwritable" => RemoteError::NotWritable(msg),
        "isdir" => RemoteError::IsDirectory,
        "exists" => RemoteError::Exists,
        "missing" => RemoteError::Missing,
        "notreadable" => RemoteError::NotReadable,
        "notregular" => RemoteError::NotRegular,
        "outside" => RemoteError::OutsideHome,
        _ => RemoteError::Failed(format!("{code} {msg}")),
    }
}

/// Parses the output of [`UploadPlan::stream_command`]: the SHA-256 of what
/// was written, or the failure the remote commands printed.
pub fn parse_upload_report(code: i32, output: &[u8]) -> Result<Sha256, TransferError> {
    let text = String::from_utf8_lossy(output);
    let report = text
        .rfind("\u{1e}D")
        .and_then(|at| Sha256::from_hex(text[at + 2..].trim_end_matches('\u{1e}').trim()));
    let messages = text
        .split('\u{1e}')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if code != 0 {
        return Err(failure(messages).into());
    }
    report.ok_or_else(|| TransferError::Protocol(format!("no report in {:?}", text.trim())))
}

/// Turns the messages of a failed remote command into an error.
fn failure(messages: String) -> RemoteError {
    if messages.contains("No space left") || messages.contains("Disk quota exceeded") {
        RemoteError::NoSpace(messages)
    } else if messages.contains("Permission denied") || messages.contains("Read-only file system") {
        RemoteError::NotWritable(messages)
    } else {
        RemoteError::Failed(messages)
    }
}

/// A download of `remote` (a file, or with [`Kind::Tree`] a directory).
#[derive(Debug, Clone)]
pub struct DownloadPlan {
    remote: String,
    kind: Kind,
}

impl DownloadPlan {
    /// Plans a download of `remote`.
    pub fn new(remote: impl Into<String>, kind: Kind) -> Self {
        Self {
            remote: remote.into(),
            kind,
        }
    }

    /// What is copied.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Checks the source and reports what it is; with `have` bytes already
    /// held locally, also the SHA-256 of the source's first `have` bytes.
    /// See [`parse_download_probe`].
    pub fn probe_command(&self, have: u64) -> String {
        subshell({
            let prefix = if have > 0 {
                format!(
                    r#"if [ "$(stat -c %s -- "$p")" -ge {have} ]; then printf 'prefix %s\n' "$(head -c {have} -- "$p" | sha256sum | cut -c1-64)"; fi; "#
                )
            } else {
                String::new()
            };
            format!(
                r#"{}if [ ! -e "$p" ]; then echo 'err missing'; exit 0; fi; if [ ! -r "$p" ]; then echo 'err notreadable'; exit 0; fi; if [ -d "$p" ]; then echo dir; elif [ -f "$p" ]; then stat -c 'file %s %a %Y' -- "$p"; {prefix}else echo 'err notregular'; exit 0; fi; echo ok"#,
                resolve_prelude(&self.remote)
            )
        })
    }

    /// Checks that the source is a readable regular file and resolves it
    /// relative to the home directory; see [`parse_located`].
    pub fn locate_command(&self) -> String {
        subshell({
            format!(
                r#"{}if [ ! -e "$p" ]; then echo 'err missing'; exit 0; fi; if [ -d "$p" ]; then echo 'err isdir'; exit 0; fi; if [ ! -f "$p" ]; then echo 'err notregular'; exit 0; fi; if [ ! -r "$p" ]; then echo 'err notreadable'; exit 0; fi; {PRINT_HOME_RELATIVE}"#,
                resolve_prelude(&self.remote)
            )
        })
    }

    /// Sends the file from `offset` on (or the tree as a tar stream), then
    /// the trailer; see [`TrailerSplitter`].
    pub fn stream_command(&self, offset: u64) -> String {
        subshell({
            let source = match self.kind {
                Kind::File => format!(r#"tail -c +{} -- "$p""#, offset + 1),
                Kind::Tree => r#"tar -c -f - -C "$p" ."#.to_owned(),
            };
            format!(
                r#"{}{HASH_FIFO}{source} | tee "$h/p"; s=$?; wait; printf '\036H%s\036' "$(cut -c1-64 "$h/s")"; rm -rf -- "$h"; exit $s"#,
                resolve_prelude(&self.remote)
            )
        })
    }
}

/// What a download probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadProbe {
    /// A directory.
    Directory,
    /// A regular file.
    File {
        /// Its size in bytes.
        size: u64,
        /// Its permission bits.
        mode: u32,
        /// Its modification time, seconds since the epoch.
        mtime: i64,
        /// The SHA-256 of its first `have` bytes, when asked and long enough.
        prefix: Option<Sha256>,
    },
}

/// Parses the output of a `locate_command`: the path relative to the home.
pub fn parse_located(output: &[u8]) -> Result<String, TransferError> {
    for (word, rest) in probe_lines(output)? {
        if word == "path" {
            let bytes: Option<Vec<u8>> = (0..rest.len() / 2)
                .map(|i| u8::from_str_radix(rest.get(2 * i..2 * i + 2)?, 16).ok())
                .collect();
            return bytes
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| TransferError::Protocol(format!("bad path {rest:?}")));
        }
    }
    Err(TransferError::Protocol("no path in the reply".into()))
}

/// The command that prints the SHA-256 of `path` (relative to the home).
pub fn sha256_command(path: &str) -> String {
    subshell({
        format!(
            "cd || exit 90; sha256sum -- {} | cut -c1-64",
            shell_quote(path)
        )
    })
}

/// Parses the output of [`DownloadPlan::probe_command`].
pub fn parse_download_probe(output: &[u8]) -> Result<DownloadProbe, TransferError> {
    let mut found = None;
    let mut prefix = None;
    for (word, rest) in probe_lines(output)? {
        match word {
            "dir" => found = Some(DownloadProbe::Directory),
            "file" => {
                let f: Vec<&str> = rest.split(' ').collect();
                let bad = || TransferError::Protocol(format!("bad file line {rest:?}"));
                let [size, mode, mtime] = f.as_slice() else {
                    return Err(bad());
                };
                found = Some(DownloadProbe::File {
                    size: size.parse().map_err(|_| bad())?,
                    mode: u32::from_str_radix(mode, 8).map_err(|_| bad())?,
                    mtime: mtime.parse().map_err(|_| bad())?,
                    prefix: None,
                });
            }
            "prefix" => prefix = Sha256::from_hex(rest),
            _ => {}
        }
    }
    match found {
        Some(DownloadProbe::File {
            size, mode, mtime, ..
        }) => Ok(DownloadProbe::File {
            size,
            mode,
            mtime,
            prefix,
        }),
        Some(d) => Ok(d),
        None => Err(TransferError::Protocol("the probe named no file".into())),
    }
}

/// Holds back the last [`DOWNLOAD_TRAILER_LEN`] bytes of a download's output
/// (the trailer) and passes the rest on, hashing it.
#[derive(Default)]
pub struct TrailerSplitter {
    held: Vec<u8>,
    hasher: Sha256Hasher,
    passed: u64,
}

impl TrailerSplitter {
    /// Feeds output; returns the bytes that are certainly data.
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        let keep = self.held.len().saturating_sub(DOWNLOAD_TRAILER_LEN);
        let out: Vec<u8> = self.held.drain(..keep).collect();
        self.hasher.update(&out);
        self.passed += out.len() as u64;
        out
    }

    /// Data bytes passed on so far.
    pub fn passed(&self) -> u64 {
        self.passed
    }

    /// Ends the stream: the SHA-256 of the data, and the one the trailer
    /// carries.
    pub fn finish(self) -> Result<(Sha256, Sha256), TransferError> {
        let t = &self.held;
        let remote = (t.len() == DOWNLOAD_TRAILER_LEN
            && t[0] == RS
            && t[1] == b'H'
            && t[DOWNLOAD_TRAILER_LEN - 1] == RS)
            .then(|| {
                std::str::from_utf8(&t[2..66])
                    .ok()
                    .and_then(Sha256::from_hex)
            })
            .flatten()
            .ok_or_else(|| {
                TransferError::Protocol(format!(
                    "the download ended without its checksum: {:?}",
                    String::from_utf8_lossy(t)
                ))
            })?;
        Ok((self.hasher.finish(), remote))
    }
}

/// Counts and hashes what is read through it.
struct Tap<R> {
    inner: R,
    hasher: Sha256Hasher,
    counter: Arc<AtomicU64>,
    result: Arc<std::sync::Mutex<Option<Sha256>>>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Tap<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &poll {
            let fresh = &buf.filled()[before..];
            if fresh.is_empty() {
                let digest = std::mem::take(&mut this.hasher).finish();
                if let Ok(mut slot) = this.result.lock() {
                    *slot = Some(digest);
                }
            } else {
                this.hasher.update(fresh);
                this.counter
                    .fetch_add(fresh.len() as u64, Ordering::Relaxed);
            }
        }
        poll
    }
}

/// Runs an upload probe.
pub async fn probe_upload(
    session: Session,
    plan: &UploadPlan,
) -> Result<UploadProbe, TransferError> {
    let (_, out) = capture_command(session, &plan.probe_command()).await?;
    parse_upload_probe(&out)
}

/// Streams `input` to the temporary file (appending from `offset`), counting
/// bytes into `progress`, and checks that the far side received exactly
/// what was read. Returns the SHA-256 of the bytes sent.
pub async fn stream_upload<R>(
    session: Session,
    plan: &UploadPlan,
    offset: u64,
    input: R,
    progress: Arc<AtomicU64>,
) -> Result<Sha256, TransferError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let result = Arc::new(std::sync::Mutex::new(None));
    let tap = Tap {
        inner: input,
        hasher: Sha256Hasher::default(),
        counter: progress,
        result: result.clone(),
    };
    let mut exec = Exec::start(session, &plan.stream_command(offset), Some(tap))
        .await?
        .stdin_line_bytes(MAX_STDIN_LINE);
    let mut out = Vec::new();
    let code = loop {
        match exec.next().await? {
            // Only messages and the report come back; keep a bounded amount.
            ExecOutput::Output(b) if out.len() < 64 * 1024 => out.extend_from_slice(&b),
            ExecOutput::Output(_) => {}
            ExecOutput::Exited(code) => break code,
        }
    };
    let remote = parse_upload_report(code, &out)?;
    let local =
        result.lock().ok().and_then(|slot| *slot).ok_or_else(|| {
            TransferError::Protocol("the remote side stopped reading early".into())
        })?;
    if local != remote {
        return Err(TransferError::Mismatch { local, remote });
    }
    Ok(local)
}

/// Moves the uploaded temporary file or tree onto its final name.
pub async fn commit_upload(
    session: Session,
    plan: &UploadPlan,
    mode: Option<u32>,
    mtime: Option<i64>,
) -> Result<(), TransferError> {
    let (code, out) = capture_command(session, &plan.commit_command(mode, mtime)).await?;
    if code == 0 && out.ends_with(b"\x1eC\x1e") {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out).trim().to_owned();
    if text.starts_with("err nodir") {
        return Err(RemoteError::NoDirectory.into());
    }
    Err(failure(text).into())
}

/// Runs a `locate_command`: the path relative to the home directory.
pub async fn locate(session: Session, command: &str) -> Result<String, TransferError> {
    let (_, out) = capture_command(session, command).await?;
    parse_located(&out)
}

/// The SHA-256 of a file in the home directory.
pub async fn remote_sha256(session: Session, path: &str) -> Result<Sha256, TransferError> {
    let (code, out) = capture_command(session, &sha256_command(path)).await?;
    let text = String::from_utf8_lossy(&out);
    if code != 0 {
        return Err(failure(text.trim().to_owned()).into());
    }
    Sha256::from_hex(text.trim())
        .ok_or_else(|| TransferError::Protocol(format!("not a SHA-256: {:?}", text.trim())))
}

/// Runs a download probe.
pub async fn probe_download(
    session: Session,
    plan: &DownloadPlan,
    have: u64,
) -> Result<DownloadProbe, TransferError> {
    let (_, out) = capture_command(session, &plan.probe_command(have)).await?;
    parse_download_probe(&out)
}

/// Streams the remote file from `offset` on (or the tree) into `output`,
/// counting bytes into `progress`, and checks the SHA-256 of what arrived
/// against the far side's. Returns it and the number of bytes.
pub async fn stream_download<W>(
    session: Session,
    plan: &DownloadPlan,
    offset: u64,
    mut output: W,
    progress: Arc<AtomicU64>,
) -> Result<(Sha256, u64), TransferError>
where
    W: AsyncWrite + Unpin,
{
    let mut exec = Exec::start(
        session,
        &plan.stream_command(offset),
        None::<tokio::io::Empty>,
    )
    .await?;
    let mut splitter = TrailerSplitter::default();
    let code = loop {
        match exec.next().await? {
            ExecOutput::Output(b) => {
                let data = splitter.feed(&b);
                output.write_all(&data).await?;
                progress.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            ExecOutput::Exited(code) => break code,
        }
    };
    output.flush().await?;
    let bytes = splitter.passed();
    if code != 0 {
        return Err(RemoteError::Failed(format!("the remote read failed (status {code})")).into());
    }
    let (local, remote) = splitter.finish()?;
    if local != remote {
        return Err(TransferError::Mismatch { local, remote });
    }
    Ok((local, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn sha256_hex_round_trip() {
        let h = Sha256::of(b"abc");
        assert_eq!(
            h.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256::from_hex(&h.hex()), Some(h));
        assert_eq!(Sha256::from_hex("zz"), None);
        let mut inc = Sha256Hasher::default();
        inc.update(b"a");
        let prefix = inc.clone().finish();
        inc.update(b"bc");
        assert_eq!(inc.finish(), h);
        assert_eq!(prefix, Sha256::of(b"a"));
    }

    #[test]
    fn upload_probe_parses_partial_space_and_errors() {
        let hex = Sha256::of(b"x").hex();
        let out = format!("part 1 {hex}\nspace 100 20\nok\n");
        let p = parse_upload_probe(out.as_bytes()).unwrap();
        assert_eq!(p.partial, Some((1, Sha256::of(b"x"))));
        assert_eq!(p.available, Some(100 * 1024));
        assert_eq!(p.home_used, Some(20 * 1024));
        assert!(matches!(
            parse_upload_probe(b"err nodir\n"),
            Err(TransferError::Remote(RemoteError::NoDirectory))
        ));
        assert!(matches!(
            parse_upload_probe(b"err notwritable bash: x: Permission denied\n"),
            Err(TransferError::Remote(RemoteError::NotWritable(m))) if m.contains("Permission")
        ));
        assert!(matches!(
            parse_upload_probe(b"space 1 2\n"),
            Err(TransferError::Protocol(_))
        ));
    }

    #[test]
    fn upload_report_and_failures() {
        let hex = Sha256::of(b"y").hex();
        let ok = format!("\x1eD{hex}\x1e");
        assert_eq!(
            parse_upload_report(0, ok.as_bytes()).unwrap(),
            Sha256::of(b"y")
        );
        let full = format!("tee: standard output: No space left on device\n\x1eD{hex}\x1e");
        assert!(matches!(
            parse_upload_report(1, full.as_bytes()),
            Err(TransferError::Remote(RemoteError::NoSpace(m))) if m.contains("No space")
        ));
    }

    #[test]
    fn download_probe_file_dir_and_missing() {
        let hex = Sha256::of(b"z").hex();
        let out = format!("file 12 644 1700000000\nprefix {hex}\nok\n");
        assert_eq!(
            parse_download_probe(out.as_bytes()).unwrap(),
            DownloadProbe::File {
                size: 12,
                mode: 0o644,
                mtime: 1_700_000_000,
                prefix: Some(Sha256::of(b"z"))
            }
        );
        assert_eq!(
            parse_download_probe(b"dir\nok\n").unwrap(),
            DownloadProbe::Directory
        );
        assert!(matches!(
            parse_download_probe(b"err missing\n"),
            Err(TransferError::Remote(RemoteError::Missing))
        ));
    }

    #[test]
    fn trailer_is_split_off_whatever_the_chunking() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = data.clone();
        stream.push(RS);
        stream.push(b'H');
        stream.extend_from_slice(Sha256::of(&data).hex().as_bytes());
        stream.push(RS);
        for size in [1, 7, 66, 67, 68, 500, 5000] {
            let mut s = TrailerSplitter::default();
            let mut got = Vec::new();
            for chunk in stream.chunks(size) {
                got.extend(s.feed(chunk));
            }
            assert_eq!(got, data, "chunk size {size}");
            let (local, remote) = s.finish().unwrap();
            assert_eq!(local, remote);
        }
        let mut s = TrailerSplitter::default();
        s.feed(b"short");
        assert!(matches!(s.finish(), Err(TransferError::Protocol(_))));
    }

    #[test]
    fn located_paths_are_hex() {
        assert_eq!(parse_located(b"path 612f62\nok\n").unwrap(), "a/b");
        assert!(matches!(
            parse_located(b"err outside\n"),
            Err(TransferError::Remote(RemoteError::OutsideHome))
        ));
    }

    #[test]
    fn commands_quote_user_paths() {
        let plan = UploadPlan::new("dir/it's here", "a'b", Kind::File);
        let cmd = plan.stream_command(0);
        assert!(cmd.contains(r"p='dir/it'\''s here'"));
        assert!(cmd.contains(r"'a'\''b'"));
        assert!(
            plan.commit_command(Some(0o100755), Some(5))
                .contains("chmod 755")
        );
    }
}
