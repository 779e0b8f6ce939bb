//! Acting on a decision (`docs/PROTOCOL.md` section 12): decide, make
//! the `started` record durable, start the hook on its own task, and when
//! it finishes journal the outcome, sign the acknowledgement and hand it to
//! the outbox. Also the acks for runs a crash
//! interrupted, and the outbox flush.

use tracing::{error, info, warn};

use super::exec::{self, ExecEnv};
use super::spawn::ToWorker;
use super::{Monitor, MonitorError, Running};
use crate::core::ack::{Ack, Status};
use crate::core::directive::{Action, Directive, Proposal};
use crate::core::quorum::{Decision, ProposalStatus, Standing};
use crate::ipc::MonitorMessage;
use crate::state::journal::{Entry, Journal, StepRecord};

impl Monitor {
    /// Decides, and starts the winning proposal's hook when nothing runs
    /// yet (one action at a time: a later decision waits for the running
    /// one to finish, then is taken again).
    pub(super) fn evaluate(&mut self) -> Result<(), MonitorError> {
        if !self.deciding || self.running.is_some() {
            return Ok(());
        }
        let decision = self.decide();
        // One tally for both reports.
        let standings = self.tally();
        if self.installed.is_none() {
            self.announce_installed_unknown(&standings);
        }
        self.heartbeat_on_new_waves(&standings);
        if !matches!(&decision, Decision::Run { proposal, .. } if proposal.required_by.is_some()) {
            self.unschedule("its quorum no longer holds or another proposal wins");
        }
        match decision {
            Decision::Nothing => Ok(()),
            Decision::Conflict(proposals) => {
                let key = format!("{proposals:?}");
                if self.announced.insert(key) {
                    let list: Vec<String> = proposals.iter().map(ToString::to_string).collect();
                    error!("conflict: quorums for different proposals at the same version, nothing runs: {}", list.join(" | "));
                    self.alert_conflict(&list);
                }
                Ok(())
            }
            Decision::Run {
                proposal,
                directives,
            } => {
                if self.options.dry_run {
                    if self.announced.insert(proposal.to_string()) {
                        let when = proposal.required_by.map_or_else(
                            || "now".to_owned(),
                            |at| format!("at {}", crate::report::utc_iso8601(at)),
                        );
                        info!(
                            "dry run: quorum of {} reached for {proposal}; would run the {} hook {when}",
                            directives.len(),
                            proposal.action.as_str()
                        );
                    }
                    return Ok(());
                }
                match proposal.required_by {
                    Some(at) => self.schedule(proposal, directives, at),
                    None => self.act(proposal, directives),
                }
            }
        }
    }

    /// Proposals whose quorum holds but whose wave leaves this node out,
    /// with this node's position (for the heartbeat).
    pub(super) fn outside_wave(&self) -> Vec<(Proposal, u8)> {
        outside_wave_of(&self.tally())
    }

    /// Every proposal's standing now, with the journal saying what already
    /// ran (the quorum engine's tally, `docs/PROTOCOL.md` section 5).
    fn tally(&self) -> Vec<ProposalStatus> {
        self.engine
            .tally(crate::now(), self.installed.as_ref(), &|p: &Proposal| {
                self.already_done(p)
            })
    }

    /// Sends a heartbeat soon when the proposals this node sits out (its
    /// `outside_wave`) changed, and logs each new one once.
    fn heartbeat_on_new_waves(&mut self, standings: &[ProposalStatus]) {
        let outside: Vec<Proposal> = outside_wave_of(standings)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        if outside == self.outside {
            return;
        }
        for p in outside.iter().filter(|p| !self.outside.contains(p)) {
            info!("{p}: quorum reached, but this node is outside its wave; it does nothing");
        }
        self.outside = outside;
        if let Some(hb) = self.telemetry.heartbeat.as_mut() {
            hb.due_now();
        }
    }

    /// Logs once per proposal an upgrade whose quorum holds but which is
    /// refused because the installed version is unknown.
    /// `standings` is the tally of an agent whose installed version is
    /// unknown.
    fn announce_installed_unknown(&mut self, standings: &[ProposalStatus]) {
        let refused: Vec<&Proposal> = standings
            .iter()
            .filter(|s| s.standing == Standing::InstalledUnknown)
            .map(|s| &s.proposal)
            .collect();
        for proposal in refused {
            if self
                .announced
                .insert(format!("installed unknown: {proposal}"))
            {
                error!(
                    "{proposal}: quorum reached, but upgrades are refused while the installed \
                     version is unknown: set current_version or version_command in the config"
                );
            }
        }
    }

    /// The quorum engine's decision now (`docs/PROTOCOL.md` section 5),
    /// with the journal (or, in a dry run, the records read at start)
    /// saying what already ran.
    pub(super) fn decide(&self) -> Decision {
        self.engine
            .decide(crate::now(), self.installed.as_ref(), &|p: &Proposal| {
                self.already_done(p)
            })
    }

    /// Whether the journal (or, in a dry run, the journal as read at
    /// start) says `proposal` must not run: it started, or is in the
    /// checkpoint, and no retry allows one more run; or it succeeded here in
    /// another wave.
    pub(super) fn already_done(&self, proposal: &Proposal) -> bool {
        match (&self.journal, &self.journaled) {
            (Some(journal), _) => journal.done(proposal),
            (None, Some(read)) => read.done(proposal),
            (None, None) => false,
        }
    }

    /// Makes the `started` record of `proposal`, with the ids and authors
    /// of `directives`, durable; its sequence number, or `None` without a
    /// journal (a dry run, which never acts).
    pub(super) fn journal_started(
        &mut self,
        proposal: &Proposal,
        directives: &[Directive],
    ) -> Result<Option<u64>, MonitorError> {
        let Some(journal) = self.journal.as_mut() else {
            return Ok(None);
        };
        let now = crate::now();
        if let Some(kept) = journal.rotate_if_full(now)? {
            info!("the full journal was kept as {}", kept.display());
        }
        let seq = journal.append_started_with_voters(proposal, &Ack::sources(directives), now)?;
        Ok(Some(seq))
    }

    /// Starts the hook for a proposal, exactly once: the `started` record
    /// is durable before the hook starts. The hook runs on its own task
    /// while the monitor goes on serving; its outcome comes back through
    /// the `finished` channel to [`Monitor::finish`].
    pub(super) fn act(
        &mut self,
        proposal: Proposal,
        directives: Vec<Directive>,
    ) -> Result<(), MonitorError> {
        let ids: Vec<[u8; 32]> = directives.iter().map(|d| d.event().id).collect();
        info!(
            "quorum of {} reached for {proposal}; running the {} hook",
            directives.len(),
            proposal.action.as_str()
        );
        let hook = self.config.hook(proposal.action).cloned();
        let Some(hook) = hook else {
            let error = format!("no [{}] hook configured", proposal.action.as_str());
            return self.fail_at_once(proposal, directives, exec::Outcome::refused(error));
        };
        // Dry run: `evaluate` never gets here; never act without a journal.
        let Some(seq) = self.journal_started(&proposal, &directives)? else {
            return Ok(());
        };
        let env = ExecEnv::new(&proposal, &ids, &self.node_id);
        let task_proposal = proposal.clone();
        self.run_on_task(
            Running {
                seq,
                proposal,
                directives,
            },
            async move { exec::execute(&hook, &task_proposal, &env).await },
        );
        Ok(())
    }

    /// Runs `hook` (a run whose `started` record is durable) on a task of
    /// its own: `running` is recorded now, and the outcome comes back
    /// through the `finished` channel to [`Monitor::finish`].
    pub(super) fn run_on_task(
        &mut self,
        running: Running,
        hook: impl std::future::Future<Output = exec::Outcome> + Send + 'static,
    ) {
        let finished = self.finished.clone();
        tokio::spawn(async move {
            let outcome = hook.await;
            // The monitor holds the receiver for its whole life.
            let _ = finished.send(outcome).await;
        });
        self.running = Some(running);
        self.write_runtime();
    }

    /// The running hook finished: journal its outcome, record the installed
    /// version after an upgrade, queue the acknowledgement. The caller
    /// flushes the outbox and evaluates again.
    pub(super) fn finish(&mut self, outcome: exec::Outcome) -> Result<(), MonitorError> {
        let Some(Running {
            seq,
            proposal,
            directives,
        }) = self.running.take()
        else {
            return Ok(());
        };
        let steps: Vec<StepRecord> = outcome
            .summary
            .iter()
            .map(|step| StepRecord {
                name: step.name.to_owned(),
                result: step.result().to_owned(),
                at: step.started_at,
                ms: step.duration_ms,
                runs: step.runs,
            })
            .collect();
        let (status, error) = (outcome.status, outcome.error);
        let action_at = crate::now();
        if let Some(journal) = self.journal.as_mut() {
            journal.append_outcome_with_steps(seq, status, error.as_deref(), &steps, action_at)?;
        }
        match (&status, &error) {
            (Status::Success, _) => info!("{proposal}: success"),
            (Status::Failure, e) => {
                error!("{proposal}: failure: {}", e.as_deref().unwrap_or("unknown"))
            }
        }
        if status == Status::Success && proposal.action == Action::Upgrade {
            self.state.set_installed_version(&proposal.version)?;
            if let Ok(v) = proposal.semver() {
                self.installed = Some(v);
            }
        }
        let sources = Ack::sources(&directives);
        self.queue_ack(&proposal, sources, status, error.as_deref(), action_at)?;
        self.write_runtime();
        self.action_finished(&proposal, status, error.as_deref(), action_at);
        Ok(())
    }

    fn queue_ack(
        &mut self,
        proposal: &Proposal,
        directives: Vec<([u8; 32], [u8; 32])>,
        status: Status,
        error: Option<&str>,
        action_at: u64,
    ) -> Result<(), MonitorError> {
        let ack = Ack {
            proposal,
            directives,
            d_tag: &self.rules.d_tag,
            status,
            error,
            node_id: &self.node_id,
            action_at,
        };
        let event = self
            .keys
            .sign(ack.to_unsigned(crate::now()))
            .map_err(MonitorError::Sign)?;
        info!("acknowledgement {} queued", event.id_hex());
        self.outbox.push(event, crate::now())?;
        Ok(())
    }

    /// A `started` record without an outcome means the agent died while a
    /// hook ran: never run it again, acknowledge it as interrupted.
    pub(super) fn acknowledge_interrupted(&mut self) -> Result<(), MonitorError> {
        let Some(interrupted) = self.journal.as_ref().map(Journal::interrupted) else {
            return Ok(());
        };
        for (seq, proposal) in interrupted {
            if self.options.dry_run {
                warn!("dry run: {proposal} was interrupted; would acknowledge it as a failure");
                continue;
            }
            warn!("{proposal} was interrupted (started, no outcome): acknowledging it as a failure, not running it again");
            let record = self.journal.as_ref().and_then(|j| j.record(seq));
            let (ids, voters): (Vec<[u8; 32]>, Vec<[u8; 32]>) = match record.map(|r| &r.entry) {
                Some(Entry::Started {
                    directive_ids,
                    voters,
                    ..
                }) => (directive_ids.clone(), voters.clone()),
                _ => (Vec::new(), Vec::new()),
            };
            let sources = if voters.len() == ids.len() && !voters.is_empty() {
                // The authors as journaled when the run started.
                let mut sources: Vec<_> = voters.into_iter().zip(ids).collect();
                sources.sort();
                sources
            } else {
                // A record from before agents journaled the authors: take
                // them from the saved directives, which a restart keeps
                // unless a newer directive replaced them.
                Ack::sources(
                    self.engine
                        .directives()
                        .filter(|d| ids.contains(&d.event().id)),
                )
            };
            let at = crate::now();
            if let Some(journal) = self.journal.as_mut() {
                journal.append_outcome(seq, Status::Failure, Some("interrupted"), at)?;
            }
            self.queue_ack(&proposal, sources, Status::Failure, Some("interrupted"), at)?;
            self.action_finished(&proposal, Status::Failure, Some("interrupted"), at);
        }
        Ok(())
    }

    /// Hands queued acks to the worker: all of them with `all`, otherwise
    /// those due for a retry (which are then rescheduled).
    pub(super) fn flush_outbox(&mut self, to_worker: &ToWorker, all: bool) {
        if self.options.dry_run {
            return;
        }
        let now = crate::now();
        match self.outbox.expire(now) {
            Ok(expired) => {
                for entry in expired {
                    warn!(
                        "acknowledgement {} dropped: not stored by every relay within {} days (stored by: {})",
                        entry.event.id_hex(),
                        crate::state::OUTBOX_DELIVERY_SECS / 86_400,
                        if entry.delivered.is_empty() { "none".to_owned() } else { entry.delivered.join(", ") }
                    );
                }
            }
            Err(e) => warn!("cannot drop expired acknowledgements: {e}"),
        }
        let entries = if all {
            self.outbox.entries().to_vec()
        } else {
            self.outbox.due(now)
        };
        for entry in entries {
            let msg = MonitorMessage::Publish {
                event: entry.event.to_json(),
            };
            if !to_worker.send(msg) {
                return;
            }
            if !all {
                if let Err(e) = self.outbox.mark_failed(&entry.event.id, now) {
                    warn!(
                        "cannot reschedule acknowledgement {}: {e}",
                        entry.event.id_hex()
                    );
                }
            }
        }
    }
}

/// The proposals of `standings` whose quorum holds but whose wave leaves
/// this node out, with this node's position in the wave (0 to 99).
fn outside_wave_of(standings: &[ProposalStatus]) -> Vec<(Proposal, u8)> {
    standings
        .iter()
        .filter_map(|s| match s.standing {
            Standing::NotInWave { position, .. } => Some((s.proposal.clone(), position)),
            _ => None,
        })
        .collect()
}
