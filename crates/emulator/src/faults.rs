//! Fault injection: throttle or fail calls on purpose so clients' retries can be tested.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::Deserialize;

use crate::aws_error::AwsError;
use crate::config::FaultConfig;

/// Counters and one-shot faults, shared by all requests.
#[derive(Debug, Default)]
pub struct Faults {
    config: FaultConfig,
    calls: AtomicU64,
    throttle_next: AtomicU32,
    fail_next: AtomicU32,
}

/// One-shot faults set through `POST /_emulator/faults`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// The next N calls are throttled (429).
    #[serde(default)]
    pub throttle_next: u32,
    /// The next N calls fail with 500.
    #[serde(default)]
    pub fail_next: u32,
}

impl Faults {
    /// Faults with periodic settings from the configuration.
    pub fn new(config: FaultConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Arms one-shot faults, replacing any still pending.
    pub fn arm(&self, request: FaultRequest) {
        self.throttle_next
            .store(request.throttle_next, Ordering::SeqCst);
        self.fail_next.store(request.fail_next, Ordering::SeqCst);
    }

    /// Called once per authenticated call: the fault to answer with, if any.
    pub fn check(&self) -> Option<AwsError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if take_one(&self.throttle_next) {
            return Some(AwsError::throttling());
        }
        if take_one(&self.fail_next) {
            return Some(AwsError::internal("injected fault: internal error"));
        }
        if self
            .config
            .throttle_every
            .is_some_and(|k| k > 0 && n.is_multiple_of(k))
        {
            return Some(AwsError::throttling());
        }
        if self
            .config
            .fail_every
            .is_some_and(|k| k > 0 && n.is_multiple_of(k))
        {
            return Some(AwsError::internal("injected fault: internal error"));
        }
        None
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_faults_run_out() {
        let f = Faults::default();
        f.arm(FaultRequest {
            throttle_next: 1,
            fail_next: 2,
        });
        assert_eq!(f.check().unwrap().code, "ThrottlingException");
        assert_eq!(f.check().unwrap().code, "InternalServerException");
        assert_eq!(f.check().unwrap().code, "InternalServerException");
        assert!(f.check().is_none());
    }

    #[test]
    fn periodic_throttling() {
        let f = Faults::new(FaultConfig {
            throttle_every: Some(3),
            fail_every: None,
        });
        let codes: Vec<_> = (0..6).map(|_| f.check().map(|e| e.code)).collect();
        assert_eq!(
            codes,
            vec![
                None,
                None,
                Some("ThrottlingException"),
                None,
                None,
                Some("ThrottlingException")
            ]
        );
    }
}
