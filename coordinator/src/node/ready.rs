//! raft-rs's ready loop, with asynchronous persistence.
//!
//! Per ready, in the documented order: send the messages (a leader's may go
//! before its own fsync, thesis §10.2.1), install the snapshot, apply the
//! committed entries, append the entries, save the hard state; then either
//! - the ready must be durable (or an earlier one still is in flight):
//!   `advance_append_async`, emit `Persist`, and hold its persisted messages
//!   until [`Node::persisted`] calls `on_persist_ready`; or
//! - nothing to make durable and nothing in flight: send the persisted
//!   messages, `advance_append`, and handle the light ready (commit index,
//!   messages, committed entries).
//!
//! Finally `advance_apply` (bounded by what raft considers persisted: an
//! installed snapshot counts as applied only once fsynced).

use raft::eraftpb::{Message, MessageType};
use raft::{ReadState, SnapshotStatus};

use super::{Effect, InFlight, Node, Proposal};
use crate::machine::StateMachine;
use crate::storage::LogStore;
use floe_protocol::FloeError;

impl<S: StateMachine, L: LogStore> Node<S, L> {
    /// Proposes the pending batch, issues pending reads, and runs the ready
    /// loop until raft has nothing more to hand out.
    pub(super) fn drive(&mut self) {
        self.flush_batch();
        self.issue_reads();
        loop {
            while self.raw.has_ready() && !self.halted() {
                self.handle_ready();
            }
            if self.halted() {
                return;
            }
            if self.snapshots_sent.is_empty() {
                break;
            }
            // We cannot know whether the shell delivered a snapshot: report
            // it finished so the leader resumes probing (and sends a new
            // one if it was lost) instead of waiting forever.
            for to in std::mem::take(&mut self.snapshots_sent) {
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
        self.observe(false);
    }

    fn handle_ready(&mut self) {
        let mut rd = self.raw.ready();
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.install_snapshot(&snap);
        }
        self.apply_entries(rd.take_committed_entries());
        if self.halted() {
            // Out of the group: raft is not advanced any further.
            return;
        }
        // Appending nothing is a no-op for every store.
        if !self.write_store(|s| s.append(rd.entries())) {
            return;
        }
        #[cfg(feature = "planted-bugs")]
        if !rd.entries().is_empty() {
            self.bug_reply_before_commit(rd.entries());
        }
        if let Some(hs) = rd.hs() {
            if !self.write_store(|s| s.set_hard_state(hs)) {
                return;
            }
        }
        for rs in rd.take_read_states() {
            self.read_state(rs);
        }
        let persisted_messages = rd.take_persisted_messages();
        if rd.must_sync() || !self.in_flight.is_empty() {
            let (number, must_sync) = (rd.number(), rd.must_sync());
            self.raw.advance_append_async(rd);
            let mark = self.raw.store().mark();
            self.in_flight.push_back(InFlight {
                number,
                mark,
                must_sync,
                messages: persisted_messages,
            });
            if must_sync {
                self.effects.push_back(Effect::Persist { token: number });
            }
        } else {
            self.send(persisted_messages);
            let mut light = self.raw.advance_append(rd);
            if let Some(commit) = light.commit_index() {
                if !self.write_store(|s| s.set_commit(commit)) {
                    return;
                }
            }
            self.send(light.take_messages());
            self.apply_entries(light.take_committed_entries());
            if self.halted() {
                return;
            }
        }
        self.advance_apply();
        self.after_apply();
    }

    /// Releases the in-flight readies covered by `token` (and the
    /// non-durable ones queued right behind them): sync the store, send
    /// their persisted messages, tell raft.
    pub(super) fn release_persisted(&mut self, token: u64) {
        let (mut released, mut mark, mut messages) = (None, None, Vec::new());
        while let Some(f) = self.in_flight.front() {
            if f.must_sync && f.number > token {
                break;
            }
            let Some(f) = self.in_flight.pop_front() else {
                break;
            };
            if f.must_sync {
                mark = Some(f.mark);
            }
            released = Some(f.number);
            messages.extend(f.messages);
        }
        // The sync comes before anything that depends on it: on failure no
        // persisted message (an append ack, a vote) leaves and raft is not
        // told, so nothing unsynced is ever acknowledged.
        if let Some(mark) = mark {
            if !self.write_store(|s| s.sync(mark)) {
                return;
            }
        }
        self.send(messages);
        if let Some(number) = released {
            self.raw.on_persist_ready(number);
            self.advance_apply();
        }
    }

    /// Tells raft how far the state machine got, never past what raft
    /// counts as committed and persisted (`applied_to` aborts otherwise).
    fn advance_apply(&mut self) {
        let log = &self.raw.raft.raft_log;
        let target = self.applied.min(log.persisted).min(log.committed);
        if target > log.applied {
            self.raw.advance_apply_to(target);
        }
    }

    pub(super) fn send(&mut self, messages: Vec<Message>) {
        for mut m in messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
            if self.lost_its_log() && m.get_msg_type() == MessageType::MsgAppendResponse && m.reject
            {
                m.context = super::LOST_LOG.to_vec().into();
            }
            let bytes = super::wire::encode_message(&m);
            self.effects.push_back(Effect::Send { to: m.to, bytes });
        }
    }

    /// Proposes the commands submitted since the last drain as one entry per
    /// `max_batch` commands, stamped with the leader's monotonic clock.
    fn flush_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if !self.is_leader() {
            for e in std::mem::take(&mut self.batch) {
                self.reply_not_leader(super::caller_of(&e));
            }
            return;
        }
        let mut rest = std::mem::take(&mut self.batch);
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(self.cfg.max_batch.max(1)));
            let batch = super::Batch {
                time_ms: self.clock,
                envelopes: std::mem::replace(&mut rest, tail),
            };
            self.propose_batch(batch);
        }
    }

    fn propose_batch(&mut self, batch: super::Batch) {
        let callers: Vec<_> = batch.envelopes.iter().map(super::caller_of).collect();
        let proposed = match batch.encode() {
            Ok(data) => self
                .raw
                .propose(Vec::new(), data)
                .map_err(|e| FloeError::Unavailable(e.to_string())),
            Err(e) => Err(FloeError::from(e)),
        };
        match proposed {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                let term = self.raw.raft.term;
                let commands = callers.len();
                self.effects.push_back(Effect::Proposed { commands });
                self.proposals.insert(index, Proposal { term, callers });
            }
            Err(e) => {
                for caller in callers {
                    self.reply(caller, Err(e.clone()));
                }
            }
        }
    }

    /// Sends the waiting reads as one ReadIndex request. raft-rs silently
    /// drops a ReadIndex until the leader committed an entry of its term, so
    /// they wait here until then.
    fn issue_reads(&mut self) {
        if self.reads_waiting.is_empty()
            || !self.is_leader()
            || !self.raw.raft.commit_to_current_term()
        {
            return;
        }
        self.next_read_ctx += 1;
        let ctx = self.next_read_ctx;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        let reads = std::mem::take(&mut self.reads_waiting);
        self.reads_issued.insert(ctx, reads);
    }

    fn read_state(&mut self, rs: ReadState) {
        let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
            return;
        };
        if let Some(reads) = self.reads_issued.remove(&u64::from_be_bytes(ctx)) {
            self.reads_ready.push((rs.index, reads));
        }
    }
}
