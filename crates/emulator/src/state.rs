//! What the emulator's HTTP handlers share: the service, the faults armed,
//! the live shell sessions; and the one clock they read.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::EmulatorCredential;
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
    /// Principals whose credentials were revoked (`POST /_emulator/revoke`):
    /// every call they sign is refused; their shells run on, as AWS's do
    /// until the environment suspends.
    pub revoked: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The credentials accepted: the configuration's, and those added
    /// since (`POST /_emulator/credentials`, [`crate::Emulator::add_credential`]),
    /// as IAM hands out access keys to new users.
    pub credentials: std::sync::RwLock<Vec<EmulatorCredential>>,
}

impl AppState {
    /// The credentials accepted now.
    pub fn credentials(&self) -> Vec<EmulatorCredential> {
        self.credentials
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Accepts `credential` from now on (replacing any with its access key id).
    pub fn add_credential(&self, credential: EmulatorCredential) {
        let mut all = self
            .credentials
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|c| c.access_key_id != credential.access_key_id);
        all.push(credential);
    }

    /// Whether `principal`'s credentials were revoked.
    pub fn is_revoked(&self, principal: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(principal)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
