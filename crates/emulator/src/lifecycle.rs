//! The environment lifecycle as a pure state machine.
//!
//! States change with time (CREATING becomes RUNNING after the create delay,
//! RUNNING suspends after the inactivity timeout, ...). Rather than run
//! timers, each environment stores its phase with the instant it ends, and
//! [`Environment::advance`] replays what happened up to `now` whenever the
//! environment is looked at. That keeps the model deterministic and testable,
//! and makes state survive restarts: an emulator that was down for an hour
//! shows exactly what a live one would.

use serde::{Deserialize, Serialize};

use crate::config::Timings;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Where an environment is in its life; transitional phases carry their end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Becomes Running at `until`.
    Creating {
        /// When creation completes.
        until: Millis,
    },
    /// Ready.
    Running,
    /// Becomes Suspended at `until`.
    Suspending {
        /// When suspension completes.
        until: Millis,
    },
    /// Stopped since `since`.
    Suspended {
        /// When it became suspended (or was last reclaimed).
        since: Millis,
    },
    /// Becomes Running at `until`.
    Resuming {
        /// When resuming completes.
        until: Millis,
    },
    /// Becomes Deleted at `until`.
    Deleting {
        /// When deletion completes.
        until: Millis,
    },
    /// Gone since `since`; purged after the linger time.
    Deleted {
        /// When deletion completed.
        since: Millis,
    },
}

impl Phase {
    /// The status string the API reports.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Creating { .. } => "CREATING",
            Self::Running => "RUNNING",
            Self::Suspending { .. } => "SUSPENDING",
            Self::Suspended { .. } => "SUSPENDED",
            Self::Resuming { .. } => "RESUMING",
            Self::Deleting { .. } => "DELETING",
            Self::Deleted { .. } => "DELETED",
        }
    }

    /// Its machine is up: processes may run in it.
    pub fn is_up(&self) -> bool {
        matches!(
            self,
            Self::Creating { .. } | Self::Running | Self::Resuming { .. }
        )
    }

    /// Counts against the per-principal limits.
    pub fn is_live(&self) -> bool {
        !matches!(self, Self::Deleting { .. } | Self::Deleted { .. })
    }
}

/// A side effect on the environment's home directory that the caller must perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reclaimed: empty the home directory.
    WipeHome,
    /// Deleted: remove the home directory.
    RemoveHome,
    /// Past the linger time: forget the environment.
    Purge,
}

/// The VPC configuration as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredVpcConfig {
    /// VPC id.
    pub vpc_id: String,
    /// Subnets.
    pub subnet_ids: Vec<String>,
    /// Security groups.
    pub security_group_ids: Vec<String>,
}

/// One environment as the emulator stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// Its id.
    pub id: String,
    /// Region it lives in.
    pub region: String,
    /// Principal that owns it.
    pub principal: String,
    /// Its name, if any.
    pub name: Option<String>,
    /// VPC configuration for a VPC environment.
    pub vpc_config: Option<StoredVpcConfig>,
    /// Current phase.
    pub phase: Phase,
    /// Last heartbeat, session or start; drives inactivity suspension.
    pub last_activity: Millis,
    /// Why the environment is in its state, when there is something to say.
    pub status_reason: Option<String>,
}

impl Environment {
    /// A new environment in CREATING.
    pub fn create(
        id: String,
        region: String,
        principal: String,
        name: Option<String>,
        vpc_config: Option<StoredVpcConfig>,
        now: Millis,
        timings: &Timings,
    ) -> Self {
        Self {
            id,
            region,
            principal,
            name,
            vpc_config,
            phase: Phase::Creating {
                until: now + ms(timings.create),
            },
            last_activity: now,
            status_reason: None,
        }
    }

    /// Replays every timed transition up to `now`, returning the home-directory
    /// effects they imply, in order.
    pub fn advance(&mut self, now: Millis, timings: &Timings) -> Vec<Effect> {
        let mut effects = Vec::new();
        loop {
            let next = match self.phase {
                Phase::Creating { until } | Phase::Resuming { until } if now >= until => {
                    self.last_activity = until;
                    Phase::Running
                }
                Phase::Running => {
                    let idle_at = self.last_activity + ms(timings.inactivity);
                    if now < idle_at {
                        break;
                    }
                    self.status_reason = Some("suspended after inactivity".to_owned());
                    Phase::Suspending {
                        until: idle_at + ms(timings.stop),
                    }
                }
                Phase::Suspending { until } if now >= until => Phase::Suspended { since: until },
                Phase::Suspended { since } => match timings.reclaim_after {
                    Some(after) if now >= since + ms(after) => {
                        effects.push(Effect::WipeHome);
                        self.status_reason = Some(
                            "reclaimed after long inactivity; home directory wiped".to_owned(),
                        );
                        Phase::Suspended {
                            since: since + ms(after),
                        }
                    }
                    _ => break,
                },
                Phase::Deleting { until } if now >= until => {
                    effects.push(Effect::RemoveHome);
                    Phase::Deleted { since: until }
                }
                Phase::Deleted { since } if now >= since + ms(timings.deleted_linger) => {
                    effects.push(Effect::Purge);
                    break;
                }
                _ => break,
            };
            self.phase = next;
        }
        effects
    }

    /// StartEnvironment: SUSPENDED -> RESUMING.
    pub fn start(&mut self, now: Millis, timings: &Timings) -> Result<(), String> {
        match self.phase {
            Phase::Suspended { .. } => {
                self.phase = Phase::Resuming {
                    until: now + ms(timings.start),
                };
                self.last_activity = now;
                self.status_reason = None;
                Ok(())
            }
            other => Err(self.wrong_state("StartEnvironment", other, "SUSPENDED")),
        }
    }

    /// StopEnvironment: RUNNING -> SUSPENDING.
    pub fn stop(&mut self, now: Millis, timings: &Timings) -> Result<(), String> {
        match self.phase {
            Phase::Running => {
                self.phase = Phase::Suspending {
                    until: now + ms(timings.stop),
                };
                self.status_reason = Some("stopped by StopEnvironment".to_owned());
                Ok(())
            }
            other => Err(self.wrong_state("StopEnvironment", other, "RUNNING")),
        }
    }

    /// DeleteEnvironment: RUNNING or SUSPENDED -> DELETING.
    pub fn delete(&mut self, now: Millis, timings: &Timings) -> Result<(), String> {
        match self.phase {
            Phase::Running | Phase::Suspended { .. } => {
                self.phase = Phase::Deleting {
                    until: now + ms(timings.delete),
                };
                self.status_reason = None;
                Ok(())
            }
            other => Err(self.wrong_state("DeleteEnvironment", other, "RUNNING or SUSPENDED")),
        }
    }

    /// Heartbeat or session: RUNNING stays RUNNING for another inactivity period.
    pub fn touch(&mut self, now: Millis, operation: &str) -> Result<(), String> {
        match self.phase {
            Phase::Running => {
                self.last_activity = now;
                Ok(())
            }
            other => Err(self.wrong_state(operation, other, "RUNNING")),
        }
    }

    fn wrong_state(&self, operation: &str, phase: Phase, needed: &str) -> String {
        format!(
            "{operation} needs environment {} to be {needed}, but it is {}",
            self.id,
            phase.status()
        )
    }
}

fn ms(d: std::time::Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn timings() -> Timings {
        Timings {
            create: Duration::from_millis(100),
            start: Duration::from_millis(50),
            stop: Duration::from_millis(30),
            delete: Duration::from_millis(20),
            inactivity: Duration::from_millis(1000),
            deleted_linger: Duration::from_millis(500),
            reclaim_after: Some(Duration::from_millis(10_000)),
        }
    }

    fn env(t: &Timings) -> Environment {
        Environment::create("e".into(), "us-east-1".into(), "p".into(), None, None, 0, t)
    }

    #[test]
    fn creating_becomes_running_after_the_delay() {
        let t = timings();
        let mut e = env(&t);
        assert!(e.advance(99, &t).is_empty());
        assert_eq!(e.phase.status(), "CREATING");
        e.advance(100, &t);
        assert_eq!(e.phase, Phase::Running);
        assert_eq!(e.last_activity, 100);
    }

    #[test]
    fn inactivity_suspends_unless_touched() {
        let t = timings();
        let mut e = env(&t);
        e.advance(100, &t);
        e.touch(900, "SendHeartBeat").unwrap();
        e.advance(1899, &t);
        assert_eq!(e.phase, Phase::Running);
        e.advance(1900, &t);
        assert_eq!(e.phase.status(), "SUSPENDING");
        e.advance(1930, &t);
        assert_eq!(e.phase, Phase::Suspended { since: 1930 });
    }

    #[test]
    fn a_long_gap_replays_every_transition() {
        let t = timings();
        let mut e = env(&t);
        // Created at 0, running at 100, idle at 1100, suspended at 1130,
        // reclaimed at 11130 and again at 21130.
        let effects = e.advance(25_000, &t);
        assert_eq!(effects, vec![Effect::WipeHome, Effect::WipeHome]);
        assert_eq!(e.phase, Phase::Suspended { since: 21_130 });
    }

    #[test]
    fn start_stop_delete_need_the_right_state() {
        let t = timings();
        let mut e = env(&t);
        assert!(e.start(10, &t).unwrap_err().contains("CREATING"));
        assert!(e.stop(10, &t).is_err());
        assert!(e.delete(10, &t).is_err());
        e.advance(100, &t);
        assert!(
            e.start(100, &t)
                .unwrap_err()
                .contains("needs environment e to be SUSPENDED")
        );
        e.stop(100, &t).unwrap();
        e.advance(130, &t);
        assert!(matches!(e.phase, Phase::Suspended { .. }));
        e.start(200, &t).unwrap();
        assert_eq!(e.phase.status(), "RESUMING");
        e.advance(250, &t);
        assert_eq!(e.phase, Phase::Running);
        e.delete(300, &t).unwrap();
        assert_eq!(e.advance(320, &t), vec![Effect::RemoveHome]);
        assert_eq!(e.phase.status(), "DELETED");
        assert_eq!(e.advance(820, &t), vec![Effect::Purge]);
    }

    #[test]
    fn heartbeat_on_a_suspended_environment_is_refused() {
        let t = timings();
        let mut e = env(&t);
        e.advance(5000, &t);
        assert!(
            e.touch(5000, "SendHeartBeat")
                .unwrap_err()
                .contains("SUSPENDED")
        );
    }
}
