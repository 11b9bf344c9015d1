//! The job registry: long operations (repair, redistribution; their work is
//! in `upkeep::jobs`) are registered here when a POST starts them, which
//! answers at once with the job, and followed through `GET /api/jobs/{id}`
//! as they progress.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use cloudshell_store_api::{Job, JobKind, JobResult};

/// Finished jobs remembered for `GET /api/jobs/{id}`.
const KEEP: usize = 100;

/// The daemon's jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Job>>,
}

impl Jobs {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<u64, Job>) -> T) -> T {
        f(&mut self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Registers a job of `kind` and returns it.
    pub fn start(&self, kind: JobKind, total: u64) -> Job {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let job = Job {
            id,
            kind,
            running: true,
            done: 0,
            total,
            result: None,
            error: None,
        };
        self.with(|jobs| {
            jobs.insert(id, job.clone());
            while jobs.len() > KEEP {
                let Some(oldest) = jobs.iter().find(|(_, j)| !j.running).map(|(id, _)| *id) else {
                    break;
                };
                jobs.remove(&oldest);
            }
        });
        job
    }

    /// Records progress.
    pub fn progress(&self, id: u64, done: u64) {
        self.with(|jobs| {
            if let Some(j) = jobs.get_mut(&id) {
                j.done = done;
            }
        });
    }

    /// Records the outcome.
    pub fn finish(&self, id: u64, outcome: Result<JobResult, String>) {
        self.with(|jobs| {
            if let Some(j) = jobs.get_mut(&id) {
                j.running = false;
                j.done = j.total;
                match outcome {
                    Ok(v) => j.result = Some(v),
                    Err(e) => j.error = Some(e),
                }
            }
        });
    }

    /// A job by id.
    pub fn get(&self, id: u64) -> Option<Job> {
        self.with(|jobs| jobs.get(&id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_progresses_and_finishes() {
        let jobs = Jobs::default();
        let j = jobs.start(JobKind::Repair, 10);
        jobs.progress(j.id, 4);
        assert_eq!(jobs.get(j.id).unwrap().done, 4);
        let result = JobResult::Repair(cloudshell_store_api::RepairResult {
            shards_rebuilt: 2,
            ..Default::default()
        });
        jobs.finish(j.id, Ok(result.clone()));
        let done = jobs.get(j.id).unwrap();
        assert!(!done.running);
        assert_eq!(done.done, 10);
        assert_eq!(done.result, Some(result));
        assert!(jobs.get(99).is_none());
        for _ in 0..(KEEP + 5) {
            let j = jobs.start(JobKind::Redistribute, 1);
            jobs.finish(j.id, Err("no".into()));
        }
        assert!(jobs.get(j.id).is_none(), "old finished jobs are forgotten");
    }
}
