//! A progress bar on stderr, only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bytes moved so far, and the bar that shows them.
pub struct Progress {
    counter: Arc<AtomicU64>,
    ticker: Option<(ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Progress {
    /// Shows `message` with a bar towards `total` bytes (a spinner when
    /// unknown), starting at `start` bytes already in place.
    pub fn start(message: &str, start: u64, total: Option<u64>, quiet: bool) -> Self {
        let counter = Arc::new(AtomicU64::new(0));
        let ticker = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template("{msg} {spinner} {bytes} {bytes_per_sec}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
            };
            bar.set_message(message.to_owned());
            bar.set_position(start);
            let (b, c) = (bar.clone(), counter.clone());
            let task = tokio::spawn(async move {
                loop {
                    b.set_position(start + c.load(Ordering::Relaxed));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            (bar, task)
        });
        Self { counter, ticker }
    }

    /// The counter the transfer adds to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((bar, task)) = self.ticker.take() {
            task.abort();
            bar.finish_and_clear();
        }
    }
}

/// `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::BinaryBytes(n).to_string()
}
