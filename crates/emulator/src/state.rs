//! What the emulator's HTTP handlers share: the service, the faults armed,
//! the live shell sessions; and the one clock they read.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::faults::Faults;
use crate::live::LiveSessions;
use crate::service::Service;

/// Shared state of the HTTP handlers.
#[derive(Debug)]
pub struct AppState {
    /// The emulated service.
    pub service: Service,
    /// Injected faults.
    pub faults: Faults,
    /// Shell sessions with a running shell.
    pub live: LiveSessions,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
