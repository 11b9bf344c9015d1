//! Reading a secret (a passphrase) from the person at the terminal without
//! echoing it, or a line from standard input when it is not a terminal (a
//! script piping it in).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::Context as _;

/// Asks for a secret with `prompt` (on standard error); the line typed,
/// without its newline.
pub fn read_secret(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read a passphrase from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let before = tcgetattr(&stdin).context("cannot read the terminal's settings")?;
    let mut quiet = before.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)
        .context("cannot turn the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    // Echo back on whatever was read.
    let restored = tcsetattr(&stdin, OptionalActions::Now, &before);
    eprintln!();
    read.context("cannot read the passphrase")?;
    restored.context("cannot turn the terminal's echo back on")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The secret in environment variable `var`, or asked for with `prompt`.
pub fn secret_from(var: Option<&str>, prompt: &str) -> anyhow::Result<String> {
    match var {
        Some(var) => {
            std::env::var(var).with_context(|| format!("the environment variable {var} is not set"))
        }
        None => read_secret(prompt),
    }
}
