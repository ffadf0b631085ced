//! What the node puts on the wire and in the log: raft messages as protobuf
//! bytes (checked before raft sees them), batches of client commands as log
//! entries, and state-machine snapshots with a checksum.

use floe_protocol::codec::{self, CodecError};
use floe_protocol::Envelope;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Message, MessageType, Snapshot, SnapshotMetadata};
use raft::{Raft, Storage};
use serde::{Deserialize, Serialize};

use super::NodeError;

/// The payload of one normal log entry: the client commands the leader
/// proposed within one cycle, with the leader's timestamp.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// Leader time in ms, monotonic at the leader that stamped it.
    pub time_ms: u64,
    /// The commands, applied in this order.
    pub envelopes: Vec<Envelope>,
}

impl Batch {
    /// Encodes the batch as entry data.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode(self)
    }

    /// Decodes entry data.
    pub fn decode(data: &[u8]) -> Result<Self, CodecError> {
        codec::decode(data)
    }
}

/// Leads every snapshot payload; bump on a layout change.
const SNAPSHOT_FORMAT: u8 = 1;
const SNAPSHOT_HEADER: usize = 1 + 8 + 8;

/// Lays out a snapshot payload: format byte, leader clock, a checksum, the
/// state machine's own snapshot bytes. Not bincode: the state can be far
/// larger than a frame. The checksum also covers the snapshot's metadata
/// (index, term, configuration), so a corrupted snapshot message is refused
/// before raft rebuilds its log from it.
pub(super) fn encode_snapshot_data(meta: &SnapshotMetadata, time_ms: u64, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER + state.len());
    out.push(SNAPSHOT_FORMAT);
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.extend_from_slice(&checksum(meta, time_ms, state).to_le_bytes());
    out.extend_from_slice(state);
    out
}

/// Splits a snapshot's payload into (leader clock, state bytes), refusing
/// one that is truncated, of another format, or does not match its
/// metadata and content.
pub(super) fn decode_snapshot_data(snap: &Snapshot) -> Result<(u64, &[u8]), NodeError> {
    let bad = |why: &str| NodeError::Refused(format!("snapshot payload: {why}"));
    let data = &snap.data[..];
    if data.len() < SNAPSHOT_HEADER {
        return Err(bad("truncated"));
    }
    if data[0] != SNAPSHOT_FORMAT {
        return Err(bad("unknown format"));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let (time_ms, state) = (word(1), &data[SNAPSHOT_HEADER..]);
    if word(9) != checksum(snap.get_metadata(), time_ms, state) {
        return Err(bad("checksum mismatch"));
    }
    Ok((time_ms, state))
}

fn checksum(meta: &SnapshotMetadata, time_ms: u64, state: &[u8]) -> u64 {
    let cs = meta.get_conf_state();
    let ids = |ids: &[u64]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids
    };
    let mut words = vec![meta.index, meta.term, time_ms, cs.voters.len() as u64];
    words.extend(ids(&cs.voters));
    words.push(cs.learners.len() as u64);
    words.extend(ids(&cs.learners));
    let head: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    fnv1a(state, fnv1a(&head, FNV_OFFSET))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Encodes a raft message for [`super::Effect::Send`].
pub(super) fn encode_message(m: &Message) -> Vec<u8> {
    // rust-protobuf only fails on unset required fields; proto3 has none.
    // Should it ever fail, dropping the message is what a lossy network
    // does, and raft retries.
    m.write_to_bytes().unwrap_or_default()
}

/// Decodes a peer's message.
pub(super) fn decode_message(bytes: &[u8]) -> Result<Message, NodeError> {
    Message::parse_from_bytes(bytes).map_err(|e| NodeError::Decode(e.to_string()))
}

/// Refuses a decoded message that raft-rs would panic on or that no
/// correct peer sends: raft trusts its peers (it is not Byzantine
/// fault-tolerant), so a corrupted or misrouted message must stop here.
pub(super) fn check_message<T: Storage>(
    raft: &Raft<T>,
    from: u64,
    m: &Message,
) -> Result<(), NodeError> {
    let refuse = |why: String| Err(NodeError::Refused(why));
    if m.to != raft.id || m.from != from || from == 0 || from == raft.id {
        return refuse(format!(
            "addressed {} -> {} but received from {from} at {}",
            m.from, m.to, raft.id
        ));
    }
    match m.get_msg_type() {
        // We never forward proposals or reads: only a leader takes them.
        MessageType::MsgPropose | MessageType::MsgReadIndex => {
            refuse(format!("{:?} from a peer", m.get_msg_type()))
        }
        MessageType::MsgAppend => check_append(raft, m),
        MessageType::MsgHeartbeat if m.commit > raft.raft_log.last_index() => {
            refuse(format!("heartbeat commits {} past our log", m.commit))
        }
        MessageType::MsgAppendResponse if !m.reject && m.index > raft.raft_log.last_index() => {
            refuse(format!("append response acks {} past our log", m.index))
        }
        MessageType::MsgSnapshot => check_snapshot(m.get_snapshot()),
        _ => Ok(()),
    }
}

/// Entries must be contiguous after `index`, with terms that never go
/// down and never exceed the message's; none may contradict an entry we
/// know to be committed (raft-rs aborts on that).
fn check_append<T: Storage>(raft: &Raft<T>, m: &Message) -> Result<(), NodeError> {
    let mut prev_term = m.log_term;
    for (i, e) in m.get_entries().iter().enumerate() {
        let in_order = e.index == m.index.wrapping_add(1 + i as u64);
        if !in_order || e.term < prev_term || e.term > m.term {
            return Err(NodeError::Refused(format!(
                "malformed append at entry {} (term {})",
                e.index, e.term
            )));
        }
        prev_term = e.term;
        if e.index <= raft.raft_log.committed {
            if let Ok(ours) = raft.raft_log.term(e.index) {
                if ours != e.term {
                    return Err(NodeError::Refused(format!(
                        "append contradicts committed entry {}",
                        e.index
                    )));
                }
            }
        }
    }
    Ok(())
}

fn check_snapshot(s: &Snapshot) -> Result<(), NodeError> {
    let meta = s.get_metadata();
    if meta.index == 0 || meta.term == 0 || !conf_state_is_simple(meta.get_conf_state()) {
        return Err(NodeError::Refused(format!(
            "malformed snapshot metadata at index {}",
            meta.index
        )));
    }
    decode_snapshot_data(s).map(|_| ())
}

/// We only make single-step membership changes, so a configuration is a
/// non-empty set of voters plus disjoint learners, never joint.
fn conf_state_is_simple(cs: &ConfState) -> bool {
    let mut ids: Vec<u64> = cs.voters.iter().chain(&cs.learners).copied().collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    !cs.voters.is_empty()
        && ids.len() == n
        && !ids.contains(&0)
        && cs.voters_outgoing.is_empty()
        && cs.learners_next.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(index: u64, time_ms: u64, state: &[u8]) -> Snapshot {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = 2;
        snap.mut_metadata().mut_conf_state().voters = vec![3, 1, 2];
        snap.data = encode_snapshot_data(snap.get_metadata(), time_ms, state).into();
        snap
    }

    #[test]
    fn snapshot_payload_round_trips_and_detects_corruption() {
        let snap = snapshot(7, 42, b"state");
        assert_eq!(decode_snapshot_data(&snap).unwrap(), (42, &b"state"[..]));
        let mut moved = snap.clone();
        moved.mut_metadata().index = 8;
        assert!(decode_snapshot_data(&moved).is_err());
        let mut reconfigured = snap.clone();
        reconfigured.mut_metadata().mut_conf_state().voters.push(4);
        assert!(decode_snapshot_data(&reconfigured).is_err());
        let data = snap.data.to_vec();
        for bad in [
            data[..5].to_vec(),
            flip(&data, data.len() - 1),
            flip(&data, 0),
            flip(&data, 3),
        ] {
            let mut s = snap.clone();
            s.data = bad.into();
            assert!(decode_snapshot_data(&s).is_err());
        }
    }

    fn flip(data: &[u8], at: usize) -> Vec<u8> {
        let mut d = data.to_vec();
        d[at] ^= 1;
        d
    }

    #[test]
    fn joint_or_empty_configurations_are_refused() {
        let mut cs = ConfState::default();
        assert!(!conf_state_is_simple(&cs));
        cs.voters = vec![1, 2];
        assert!(conf_state_is_simple(&cs));
        cs.learners = vec![2];
        assert!(!conf_state_is_simple(&cs));
        cs.learners = vec![3];
        cs.voters_outgoing = vec![1];
        assert!(!conf_state_is_simple(&cs));
    }
}
