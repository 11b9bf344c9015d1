//! The shell sessions whose shells are running: a data channel attaches to
//! one by session id; DeleteSession and a stopped environment end them.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::{mpsc, watch};

/// A WebSocket's two directions, handed to the session task.
pub(crate) struct Attachment {
    pub(crate) to_client: mpsc::Sender<Vec<u8>>,
    pub(crate) from_client: mpsc::Receiver<Vec<u8>>,
}

pub(crate) struct LiveSession {
    pub(crate) environment_id: String,
    pub(crate) attach: mpsc::Sender<Attachment>,
    pub(crate) end: watch::Sender<Option<String>>,
}

/// The sessions whose shells are running.
#[derive(Default)]
pub struct LiveSessions {
    sessions: Mutex<HashMap<String, LiveSession>>,
}

impl std::fmt::Debug for LiveSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.sessions.lock().map_or(0, |m| m.len());
        write!(f, "LiveSessions({n})")
    }
}

impl LiveSessions {
    /// Ends one session (DeleteSession).
    pub fn end(&self, session_id: &str, reason: &str) {
        if let Ok(map) = self.sessions.lock()
            && let Some(s) = map.get(session_id)
        {
            let _ = s.end.send(Some(reason.to_owned()));
        }
    }

    /// Ends every session of an environment (stopped or deleted).
    pub fn end_environment(&self, environment_id: &str, reason: &str) {
        if let Ok(map) = self.sessions.lock() {
            for s in map.values().filter(|s| s.environment_id == environment_id) {
                let _ = s.end.send(Some(reason.to_owned()));
            }
        }
    }

    pub(crate) fn attach_sender(&self, session_id: &str) -> Option<mpsc::Sender<Attachment>> {
        self.sessions
            .lock()
            .ok()?
            .get(session_id)
            .map(|s| s.attach.clone())
    }

    pub(crate) fn insert(&self, session_id: &str, session: LiveSession) {
        if let Ok(mut map) = self.sessions.lock() {
            map.insert(session_id.to_owned(), session);
        }
    }

    pub(crate) fn remove(&self, session_id: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(session_id);
        }
    }
}
