//! Deadlines (`docs/PROTOCOL.md` section 12, "Deadlines"): a proposal that
//! carries `required_by` is scheduled. As soon as its quorum holds, its
//! `fetch` step and artifact hash check run on a task of their own
//! (pre-staging); `command` starts at `required_by` from a timer. A quorum
//! first reached more than the section's `deadline_grace_secs` after
//! `required_by` is refused with `deadline passed`.
//!
//! One proposal is scheduled at a time, and never while a hook runs: the
//! schedule follows the decision, so a vote that changes, a directive that
//! expires or a higher version that wins drops it (its pre-staging task is
//! aborted). Pre-staging needs no `started` record: it may run again after
//! a restart before the deadline. The `started` record is made durable when
//! the action starts, as for any action.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use super::exec::{self, ExecEnv, Outcome, Staged};
use super::{Monitor, MonitorError, Running};
use crate::core::ack::Status;
use crate::core::directive::{Directive, Proposal};
use crate::core::quorum::Decision;

/// A pre-staging task's result, tagged with the schedule it belongs to.
pub(super) struct Prestaged {
    /// [`Scheduled::token`] of the schedule that started the task.
    token: u64,
    result: Result<Staged, Outcome>,
}

/// The proposal waiting for its deadline.
pub(super) struct Scheduled {
    proposal: Proposal,
    /// The directives that formed the quorum (the latest seen).
    directives: Vec<Directive>,
    /// `required_by`, unix seconds.
    at: u64,
    /// Tells this schedule's pre-staging result from an aborted one's.
    token: u64,
    /// The pre-staging task while `fetch` or the hash check runs.
    task: Option<tokio::task::AbortHandle>,
    /// The pre-staged run once pre-staging passed; the action starts from
    /// it at the deadline.
    staged: Option<Staged>,
}

impl Drop for Scheduled {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What `status` shows about the schedule (`runtime.json` member
/// `scheduled`).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct ScheduledRuntime {
    proposal: String,
    /// `required_by`, unix seconds.
    at: u64,
    /// `running` or `ready`.
    prestage: &'static str,
}

/// `true` once the wall clock has reached `at` (unix seconds), to the
/// nanosecond.
fn reached(at: u64) -> bool {
    SystemTime::now() >= UNIX_EPOCH + Duration::from_secs(at)
}

/// The monotonic instant at which the wall clock reads `at` (unix
/// seconds), as far as can be told now; now when that is past.
fn instant_of(at: u64) -> tokio::time::Instant {
    let target = UNIX_EPOCH + Duration::from_secs(at);
    let wait = target
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    tokio::time::Instant::now() + wait
}

impl Monitor {
    /// The winning proposal carries `required_by` = `at`: keep or make its
    /// schedule, refuse it when its deadline (plus grace) has passed, or
    /// start it when it is due and pre-staged.
    pub(super) fn schedule(
        &mut self,
        proposal: Proposal,
        directives: Vec<Directive>,
        at: u64,
    ) -> Result<(), MonitorError> {
        if let Some(s) = self.scheduled.as_mut() {
            if s.proposal == proposal {
                s.directives = directives;
                return self.start_if_due();
            }
            self.unschedule(&format!("{proposal} wins now"));
        }
        let Some(hook) = self.config.hook(proposal.action).cloned() else {
            // `act` acknowledges the missing section as a failure.
            return self.act(proposal, directives);
        };
        let now = crate::now();
        let latest = at.saturating_add(hook.deadline_grace_secs());
        if now > latest {
            warn!(
                "{proposal}: quorum reached {} s after its deadline {} (grace {} s): refused",
                now.saturating_sub(at),
                crate::report::utc_iso8601(at),
                hook.deadline_grace_secs()
            );
            return self.fail_at_once(
                proposal,
                directives,
                Outcome::refused("deadline passed".to_owned()),
            );
        }
        self.next_schedule_token = self.next_schedule_token.wrapping_add(1);
        let token = self.next_schedule_token;
        let ids: Vec<[u8; 32]> = directives.iter().map(|d| d.event().id).collect();
        let env = ExecEnv::new(&proposal, &ids, &self.node_id);
        let (task_proposal, results) = (proposal.clone(), self.prestaged.clone());
        let task = tokio::spawn(async move {
            let result = exec::prestage(&hook, &task_proposal, &env).await;
            // The monitor holds the receiver for its whole life.
            let _ = results.send(Prestaged { token, result }).await;
        });
        info!(
            "quorum of {} reached for {proposal}; scheduled for {} (in {} s), pre-staging now",
            directives.len(),
            crate::report::utc_iso8601(at),
            at.saturating_sub(now)
        );
        self.scheduled = Some(Scheduled {
            proposal,
            directives,
            at,
            token,
            task: Some(task.abort_handle()),
            staged: None,
        });
        self.write_runtime();
        Ok(())
    }

    /// Drops the schedule, if any (aborting its pre-staging), saying why.
    pub(super) fn unschedule(&mut self, why: &str) {
        if let Some(s) = self.scheduled.take() {
            info!("{} unscheduled: {why}", s.proposal);
            self.write_runtime();
        }
    }

    /// A pre-staging task finished: the action waits for its deadline, or
    /// starts when that has come; a failed pre-staging is the run's
    /// outcome at once.
    pub(super) fn prestaged(&mut self, done: Prestaged) -> Result<(), MonitorError> {
        let Some(s) = self.scheduled.as_mut() else {
            return Ok(());
        };
        if s.token != done.token {
            return Ok(());
        }
        match done.result {
            Ok(staged) => {
                info!(
                    "{} pre-staged; starts at {}",
                    s.proposal,
                    crate::report::utc_iso8601(s.at)
                );
                s.task = None;
                s.staged = Some(staged);
                self.write_runtime();
                self.start_if_due()
            }
            Err(outcome) => {
                let Some(s) = self.scheduled.take() else {
                    return Ok(());
                };
                let (proposal, directives) = (s.proposal.clone(), s.directives.clone());
                error!("{proposal}: pre-staging failed");
                self.fail_at_once(proposal, directives, outcome)
            }
        }
    }

    /// The deadline timer fired: start the scheduled action if it still
    /// wins (decided again, whether or not the current worker has synced:
    /// the schedule was decided before), otherwise drop it.
    pub(super) fn deadline_reached(&mut self) -> Result<(), MonitorError> {
        let Some(s) = self.scheduled.as_ref() else {
            return Ok(());
        };
        let still =
            matches!(self.decide(), Decision::Run { proposal, .. } if proposal == s.proposal);
        if still {
            self.start_if_due()
        } else {
            self.unschedule("its quorum no longer holds or another proposal wins");
            self.evaluate()
        }
    }

    /// When the scheduled action is pre-staged and its deadline has come:
    /// make its `started` record durable and start `command` on its own
    /// task.
    fn start_if_due(&mut self) -> Result<(), MonitorError> {
        let due = self
            .scheduled
            .as_ref()
            .is_some_and(|s| s.staged.is_some() && reached(s.at));
        if !due || self.running.is_some() {
            return Ok(());
        }
        let Some(mut s) = self.scheduled.take() else {
            return Ok(());
        };
        let Some(staged) = s.staged.take() else {
            return Ok(());
        };
        let Some(hook) = self.config.hook(s.proposal.action).cloned() else {
            return Ok(());
        };
        let late_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH + Duration::from_secs(s.at))
            .map_or(0, |d| d.as_millis());
        info!(
            "deadline {} of {} reached ({late_ms} ms ago); running the {} hook",
            crate::report::utc_iso8601(s.at),
            s.proposal,
            s.proposal.action.as_str()
        );
        let (proposal, directives) = (s.proposal.clone(), s.directives.clone());
        let Some(seq) = self.journal_started(&proposal, &directives)? else {
            return Ok(());
        };
        let recheck = hook.artifact().is_some();
        let task_proposal = proposal.clone();
        self.run_on_task(
            Running {
                seq,
                proposal,
                directives,
            },
            async move { exec::act(&hook, &task_proposal, staged, recheck).await },
        );
        Ok(())
    }

    /// When the deadline timer should fire: the scheduled action's
    /// `required_by` once it is pre-staged; `None` otherwise (a pre-staging
    /// that finishes late starts the action itself).
    pub(super) fn schedule_wake(&self) -> Option<tokio::time::Instant> {
        let s = self.scheduled.as_ref()?;
        (s.staged.is_some() && self.running.is_none()).then(|| instant_of(s.at))
    }

    /// The scheduled proposal and its deadline (unix seconds), for the
    /// metrics.
    pub(super) fn scheduled_deadline(&self) -> Option<(Proposal, u64)> {
        self.scheduled.as_ref().map(|s| (s.proposal.clone(), s.at))
    }

    /// The schedule as `runtime.json` records it.
    pub(super) fn scheduled_runtime(&self) -> Option<ScheduledRuntime> {
        self.scheduled.as_ref().map(|s| ScheduledRuntime {
            proposal: s.proposal.to_string(),
            at: s.at,
            prestage: if s.staged.is_some() {
                "ready"
            } else {
                "running"
            },
        })
    }

    /// Journals a run that ends before its action starts (pre-staging
    /// failed, deadline passed, no hook section): `started` then the
    /// outcome, and the acknowledgement, as for any finished run.
    pub(super) fn fail_at_once(
        &mut self,
        proposal: Proposal,
        directives: Vec<Directive>,
        outcome: Outcome,
    ) -> Result<(), MonitorError> {
        debug_assert_eq!(outcome.status, Status::Failure);
        let Some(seq) = self.journal_started(&proposal, &directives)? else {
            return Ok(());
        };
        self.running = Some(Running {
            seq,
            proposal,
            directives,
        });
        self.finish(outcome)
    }
}
