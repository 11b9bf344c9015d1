//! Retry policy: which failures are worth another attempt, and how long to wait.
//!
//! Follows the AWS SDKs' "standard" mode: 3 attempts, exponential backoff with
//! full jitter (a uniformly random delay between zero and the exponential
//! ceiling), retrying throttling, 5xx and transport failures. A request that
//! is not idempotent is retried only when the failure proves the service did
//! not act on it: the connection was never made, or the service throttled it.

use std::time::Duration;

use rand::Rng;

/// How many attempts to make and how long to wait between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Ceiling of the first backoff; doubles with each attempt.
    pub initial_backoff: Duration,
    /// The ceiling never exceeds this.
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
        }
    }
}

impl RetryConfig {
    /// The delay before attempt `failed + 1`, given `failed` attempts so far (1-based).
    pub(crate) fn backoff(&self, failed: u32, rng: &mut impl Rng) -> Duration {
        let exp = failed.saturating_sub(1).min(30);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

/// What a failed attempt says about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// The service refused before acting (throttled) or was never reached: safe for any request.
    SafeForAll,
    /// Transient, but the service may have acted: only idempotent requests.
    IdempotentOnly,
    /// Retrying will not help.
    No,
}

/// AWS error codes that mean "slow down", as the SDKs list them.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// AWS error codes for transient failures, as the SDKs list them.
const TRANSIENT_CODES: &[&str] = &["RequestTimeout", "RequestTimeoutException", "InternalError"];

pub(crate) fn classify_response(status: u16, code: Option<&str>) -> Retry {
    if status == 429 || code.is_some_and(|c| THROTTLING_CODES.contains(&c)) {
        Retry::SafeForAll
    } else if matches!(status, 500 | 502 | 503 | 504)
        || code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
    {
        Retry::IdempotentOnly
    } else {
        Retry::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_stays_under_the_exponential_ceiling() {
        let cfg = RetryConfig {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            assert!(cfg.backoff(1, &mut rng) <= Duration::from_millis(100));
            assert!(cfg.backoff(2, &mut rng) <= Duration::from_millis(200));
            assert!(cfg.backoff(3, &mut rng) <= Duration::from_millis(400));
            assert!(cfg.backoff(9, &mut rng) <= Duration::from_millis(1000));
            assert!(cfg.backoff(u32::MAX, &mut rng) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let cfg = RetryConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a: Vec<_> = (0..20).map(|_| cfg.backoff(2, &mut rng)).collect();
        assert!(
            a.iter().any(|d| *d != a[0]),
            "full jitter must vary the delay"
        );
    }

    #[test]
    fn classification() {
        assert_eq!(classify_response(429, None), Retry::SafeForAll);
        assert_eq!(
            classify_response(400, Some("ThrottlingException")),
            Retry::SafeForAll
        );
        assert_eq!(
            classify_response(500, Some("InternalServerException")),
            Retry::IdempotentOnly
        );
        assert_eq!(classify_response(503, None), Retry::IdempotentOnly);
        assert_eq!(
            classify_response(400, Some("ValidationException")),
            Retry::No
        );
        assert_eq!(
            classify_response(402, Some("ServiceQuotaExceededException")),
            Retry::No
        );
    }
}
