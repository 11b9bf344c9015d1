//! Printing results: aligned text for people, the API's JSON for scripts.

use std::io::Write;

use serde::Serialize;

use crate::args::OutputFormat;

/// Writes results to stdout in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    format: OutputFormat,
}

impl Printer {
    /// A printer for this format.
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// True when scripts are reading.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints `value` as JSON, or `rows` as aligned columns under `headers`.
    pub fn table<T: Serialize>(
        &self,
        value: &T,
        headers: &[&str],
        rows: &[Vec<String>],
    ) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => self.json(value),
            OutputFormat::Table => {
                let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
                for row in rows {
                    for (w, cell) in widths.iter_mut().zip(row) {
                        *w = (*w).max(cell.chars().count());
                    }
                }
                let mut out = String::new();
                let mut line = |cells: Vec<&str>| {
                    let last = cells.len().saturating_sub(1);
                    for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                        if i == last {
                            out.push_str(cell);
                        } else {
                            out.push_str(&format!("{cell:<w$}  "));
                        }
                    }
                    out.push('\n');
                };
                line(headers.to_vec());
                for row in rows {
                    line(row.iter().map(String::as_str).collect());
                }
                write_stdout(&out)
            }
        }
    }

    /// Prints `value` as JSON, or `pairs` as `key: value` lines.
    pub fn record<T: Serialize>(&self, value: &T, pairs: &[(&str, String)]) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => self.json(value),
            OutputFormat::Table => {
                let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                let out: String = pairs
                    .iter()
                    .map(|(k, v)| format!("{k:<width$}  {v}\n"))
                    .collect();
                write_stdout(&out)
            }
        }
    }

    /// Prints `value` as JSON, or `message` as a line.
    pub fn message<T: Serialize>(&self, value: &T, message: &str) -> anyhow::Result<()> {
        match self.format {
            OutputFormat::Json => self.json(value),
            OutputFormat::Table => write_stdout(&format!("{message}\n")),
        }
    }

    fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let mut s = serde_json::to_string_pretty(value)?;
        s.push('\n');
        write_stdout(&s)
    }
}

/// A closed pipe (`cloudshell list | head -1`) is not an error worth a message.
fn write_stdout(s: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(s.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
