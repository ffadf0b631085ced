//! Applying what raft committed: batches of commands (answering the
//! proposer's clients), membership changes, snapshots; and taking snapshots
//! to compact the log.

use floe_protocol::FloeError;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Snapshot};

use super::{wire, Caller, Effect, Node};
use crate::machine::StateMachine;
use crate::storage::{LogError, LogStore};

impl<S: StateMachine, L: LogStore> Node<S, L> {
    /// Applies committed entries in log order.
    pub(super) fn apply_entries(&mut self, entries: Vec<Entry>) {
        for e in entries {
            if self.halted() {
                return;
            }
            if e.index <= self.applied {
                // Already reflected (only a planted bug applies early).
                continue;
            }
            debug_assert_eq!(e.index, self.applied + 1, "gap in applied entries");
            match e.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(&e),
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    self.apply_conf_change(&e)
                }
            }
            self.applied = e.index;
            self.record_applied();
        }
    }

    /// Applies one batch; the node that proposed it answers its clients.
    pub(super) fn apply_normal(&mut self, e: &Entry) {
        let callers = self.take_proposal(e.index, e.term);
        if e.data.is_empty() {
            // The empty entry a new leader appends to commit its term.
            return;
        }
        let batch = match super::Batch::decode(&e.data) {
            Ok(batch) => batch,
            Err(err) => {
                // Every replica decodes the same bytes, so all skip it alike.
                tracing::error!(index = e.index, %err, "undecodable log entry skipped");
                let outcome = Err(FloeError::from(err));
                for caller in callers.into_iter().flatten() {
                    self.reply(caller, outcome.clone());
                }
                return;
            }
        };
        self.clock = self.clock.max(batch.time_ms);
        for env in &batch.envelopes {
            let outcome = self.machine.apply(batch.time_ms, env);
            if callers.is_some() {
                self.reply(super::caller_of(env), outcome);
            }
        }
    }

    /// The callers of the batch this node proposed at `index`, if the entry
    /// applied there is that batch (same term). Proposals at or below
    /// `index` whose entry was overwritten by another leader get `NotLeader`.
    fn take_proposal(&mut self, index: u64, term: u64) -> Option<Vec<Caller>> {
        let mut mine = None;
        while let Some(entry) = self.proposals.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (at, proposal) = entry.remove_entry();
            if at == index && proposal.term == term {
                mine = Some(proposal.callers);
            } else {
                for caller in proposal.callers {
                    self.reply_not_leader(caller);
                }
            }
        }
        mine
    }

    fn apply_conf_change(&mut self, e: &Entry) {
        let applied = if e.get_entry_type() == EntryType::EntryConfChange {
            ConfChange::parse_from_bytes(&e.data)
                .map_err(|err| err.to_string())
                .and_then(|cc| self.raw.apply_conf_change(&cc).map_err(|e| e.to_string()))
        } else {
            ConfChangeV2::parse_from_bytes(&e.data)
                .map_err(|err| err.to_string())
                .and_then(|cc| self.raw.apply_conf_change(&cc).map_err(|e| e.to_string()))
        };
        match applied {
            Ok(cs) => {
                if !self.write_store(|s| s.set_conf_state(&cs)) {
                    return;
                }
                self.conf_changed(&cs);
                let id = self.cfg.id;
                if !cs.voters.contains(&id) && !cs.learners.contains(&id) {
                    self.retire();
                }
                // The stored snapshot must carry the new configuration: a
                // node just added catches up from it and refuses a snapshot
                // that does not list it.
                self.force_snapshot = true;
            }
            // Deterministic: every replica refuses the same change.
            Err(err) => tracing::warn!(index = e.index, %err, "conf change refused"),
        }
    }

    /// Leaves the group after applying a configuration without this node.
    /// raft-rs keeps a removed leader leading (and later aborts in
    /// `on_persist_entries`, its own progress being gone), so the node
    /// stops driving raft and answers everyone waiting `NotLeader`: they
    /// retry elsewhere and the idempotency table keeps that exactly-once.
    fn retire(&mut self) {
        self.removed = true;
        self.answer_everyone_not_leader();
    }

    /// Runs a log-store write; on failure the node stops for good (see
    /// [`Effect::Failed`]) and the caller must return at once. Returns
    /// whether the write succeeded.
    pub(super) fn write_store(
        &mut self,
        write: impl FnOnce(&mut L) -> Result<(), LogError>,
    ) -> bool {
        match write(self.raw.mut_store()) {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(node = self.cfg.id, %error, "log store failed; node stops");
                self.failure = Some(error.clone());
                self.effects.push_back(Effect::Failed { error });
                self.answer_everyone_not_leader();
                false
            }
        }
    }

    /// Answers every waiting command and read `NotLeader`: they retry
    /// elsewhere and the idempotency table keeps that exactly-once.
    fn answer_everyone_not_leader(&mut self) {
        let callers: Vec<super::Caller> = std::mem::take(&mut self.proposals)
            .into_values()
            .flat_map(|p| p.callers)
            .chain(
                std::mem::take(&mut self.batch)
                    .into_iter()
                    .map(|e| super::Caller {
                        client: e.client,
                        seq: e.seq,
                    }),
            )
            .chain(
                std::mem::take(&mut self.reads_waiting)
                    .into_iter()
                    .map(|r| r.caller),
            )
            .chain(
                std::mem::take(&mut self.reads_issued)
                    .into_values()
                    .flatten()
                    .map(|r| r.caller),
            )
            .chain(
                std::mem::take(&mut self.reads_ready)
                    .into_iter()
                    .flat_map(|(_, reads)| reads)
                    .map(|r| r.caller),
            )
            .collect();
        for caller in callers {
            self.reply_not_leader(caller);
        }
    }

    fn conf_changed(&mut self, cs: &ConfState) {
        self.effects.push_back(Effect::ConfChanged {
            voters: super::sorted(cs.voters.clone()),
            learners: super::sorted(cs.learners.clone()),
        });
    }

    fn record_applied(&mut self) {
        let every = self.cfg.digest_every;
        if every > 0 && self.applied.is_multiple_of(every) {
            self.push_applied();
        }
    }

    fn push_applied(&mut self) {
        self.effects.push_back(Effect::Applied {
            index: self.applied,
            digest: self.machine.digest(),
        });
    }

    /// Installs a snapshot raft accepted from the leader: the store's log is
    /// replaced and the state machine restored from it.
    pub(super) fn install_snapshot(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        if !self.write_store(|s| s.install_snapshot(snap)) {
            return;
        }
        self.restore_machine(snap);
        self.applied = meta.index;
        self.snapshot_index = meta.index;
        self.take_proposal(meta.index, 0);
        self.conf_changed(meta.get_conf_state());
        self.push_applied();
    }

    pub(super) fn restore_machine(&mut self, snap: &Snapshot) {
        // `step` verified the payload's checksum before raft saw it, so a
        // failure here is a broken state machine, not a bad peer.
        let restored = wire::decode_snapshot_data(snap).and_then(|(time_ms, state)| {
            self.clock = self.clock.max(time_ms);
            self.machine
                .restore(state)
                .map_err(super::NodeError::Machine)
        });
        if let Err(err) = restored {
            panic!("cannot restore a verified snapshot: {err}");
        }
    }

    /// Work after each ready: compact the log if due, answer reads whose
    /// read index is now applied.
    pub(super) fn after_apply(&mut self) {
        self.maybe_snapshot();
        self.answer_reads();
    }

    fn maybe_snapshot(&mut self) {
        let every = self.cfg.snapshot_every;
        let due = self.force_snapshot
            || (every > 0 && self.applied >= self.snapshot_index.saturating_add(every));
        let log = &self.raw.raft.raft_log;
        let index = self.applied;
        if !due || index <= self.snapshot_index || index > log.committed.min(log.persisted) {
            return;
        }
        let Ok(term) = log.term(index) else { return };
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.raw.raft.prs().conf().to_conf_state());
        let state = match self.machine.snapshot() {
            Ok(state) => state,
            Err(error) => {
                // Keep the log (nothing is lost) and try again next time.
                tracing::error!(node = self.cfg.id, %error, "cannot snapshot the state machine; log not compacted");
                return;
            }
        };
        snap.data = wire::encode_snapshot_data(snap.get_metadata(), self.clock, &state).into();
        if !self.write_store(|s| s.compact(&snap)) {
            return;
        }
        self.snapshot_index = index;
        self.force_snapshot = false;
    }

    fn answer_reads(&mut self) {
        if self.reads_ready.is_empty() {
            return;
        }
        let applied = self.applied;
        let (now, later) = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_ready = later;
        for read in now.into_iter().flat_map(|(_, reads)| reads) {
            let outcome = self.machine.query(&read.query);
            self.reply(read.caller, outcome);
        }
    }
}

#[cfg(feature = "planted-bugs")]
impl<S: StateMachine, L: LogStore> Node<S, L> {
    /// Planted bug `reply_before_commit`: the leader applies the entries it
    /// just appended (and answers their clients) without waiting for the
    /// fsync or the commit.
    pub(super) fn bug_reply_before_commit(&mut self, entries: &[Entry]) {
        if !self.cfg.bugs.reply_before_commit || !self.is_leader() {
            return;
        }
        for e in entries {
            if e.index != self.applied + 1 || e.get_entry_type() != EntryType::EntryNormal {
                return;
            }
            self.apply_normal(e);
            self.applied = e.index;
            self.record_applied();
        }
    }

    /// Planted bug `apply_snapshot_out_of_order`: a snapshot older than the
    /// applied state (a delayed duplicate) is restored anyway, rolling the
    /// state machine back while the applied index stays where it was.
    pub(super) fn bug_restore_stale_snapshot(&mut self, m: &raft::eraftpb::Message) {
        let stale = m.get_snapshot().get_metadata().index < self.applied;
        if self.cfg.bugs.apply_snapshot_out_of_order
            && m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot
            && stale
        {
            self.restore_machine(m.get_snapshot());
        }
    }
}
