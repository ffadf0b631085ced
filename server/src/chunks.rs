//! Raft messages larger than one frame (state-machine snapshots) travel out
//! of band of the ordinary Raft traffic, as a transfer of bounded parts
//! ([`Message::RaftChunk`]), each with its CRC-32 and acknowledged by the
//! receiver ([`Message::RaftChunkAck`]). The sender keeps at most a window
//! of unacknowledged parts in flight; when a connection is lost it resumes
//! from the last acknowledged byte, and the receiver keeps what it holds
//! across connections. Only the whole message is stepped into the node.
//!
//! Both sides are pure state machines: the peer-link actor moves their
//! messages on and off sockets and decides nothing.

use floe_protocol::codec::MAX_SNAPSHOT_LEN;
use floe_protocol::Message;

/// The default part size.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Parts sent ahead of the last acknowledgement.
pub const WINDOW: usize = 4;

/// A transfer whose acknowledgements did not move for this long is given
/// up (the peer is gone or stuck; Raft sends a fresh snapshot when it
/// needs to).
pub const STALL_MS: u64 = 30_000;

/// The sending side of one peer link's large messages.
#[derive(Debug)]
pub struct Outgoing {
    me: u64,
    chunk: usize,
    next_id: u64,
    run: Option<Run>,
}

/// The transfer under way.
#[derive(Debug)]
struct Run {
    id: u64,
    bytes: Vec<u8>,
    /// The next byte to send.
    sent: usize,
    /// Bytes the receiver acknowledged.
    acked: usize,
    /// When (shell clock, ms) the acknowledgements last moved.
    moved_ms: u64,
}

impl Outgoing {
    /// A sender for node `me`, in parts of `chunk` bytes; transfer ids
    /// start at `first_id` (drawn at random by the shell, so that a
    /// restarted sender does not reuse the ids of its previous life).
    pub fn new(me: u64, chunk: usize, first_id: u64) -> Self {
        Outgoing {
            me,
            chunk: chunk.max(1),
            next_id: first_id,
            run: None,
        }
    }

    /// True when `bytes` must go as a transfer rather than one frame.
    pub fn is_large(&self, bytes: &[u8]) -> bool {
        bytes.len() > self.chunk
    }

    /// Starts a transfer of `bytes` at `now_ms`. Refused (returns false,
    /// the message is dropped) while another one is under way: Raft sends
    /// its snapshot again when it needs to, and one transfer per link
    /// bounds memory.
    pub fn start(&mut self, bytes: Vec<u8>, now_ms: u64) -> bool {
        if self.run.is_some() {
            return false;
        }
        self.next_id = self.next_id.wrapping_add(1);
        self.run = Some(Run {
            id: self.next_id,
            bytes,
            sent: 0,
            acked: 0,
            moved_ms: now_ms,
        });
        true
    }

    /// True while a transfer is under way.
    pub fn busy(&self) -> bool {
        self.run.is_some()
    }

    /// The next part to send, if the window allows one.
    pub fn next_part(&mut self) -> Option<Message> {
        let chunk = self.chunk;
        let run = self.run.as_mut()?;
        if run.sent >= run.bytes.len() || run.sent >= run.acked + WINDOW * chunk {
            return None;
        }
        let end = (run.sent + chunk).min(run.bytes.len());
        let part = run.bytes[run.sent..end].to_vec();
        let message = Message::RaftChunk {
            from: self.me,
            id: run.id,
            offset: run.sent as u64,
            total: run.bytes.len() as u64,
            crc32: crc32fast::hash(&part),
            bytes: part,
        };
        run.sent = end;
        Some(message)
    }

    /// The receiver holds `received` bytes of transfer `id`: the transfer
    /// is done when that is all of it, and goes on from there otherwise
    /// (back to an earlier byte when the receiver lost or refused parts).
    /// Returns true when the transfer just finished.
    pub fn acked(&mut self, id: u64, received: u64, now_ms: u64) -> bool {
        let Some(run) = self.run.as_mut().filter(|r| r.id == id) else {
            return false;
        };
        let received = usize::try_from(received).unwrap_or(usize::MAX);
        if received >= run.bytes.len() {
            self.run = None;
            return true;
        }
        // Acks arrive in order on one connection: a lower count than sent
        // means the receiver dropped what followed it.
        if received > run.acked {
            run.moved_ms = now_ms;
        }
        run.acked = received;
        run.sent = received;
        false
    }

    /// The connection was lost: resume from the last acknowledged byte.
    pub fn reconnected(&mut self) {
        if let Some(run) = self.run.as_mut() {
            run.sent = run.acked;
        }
    }

    /// Gives up the transfer under way if its acknowledgements have not
    /// moved for [`STALL_MS`] at `now_ms`; returns how far it got (bytes
    /// acknowledged, total) when it did.
    pub fn give_up_if_stalled(&mut self, now_ms: u64) -> Option<(usize, usize)> {
        let run = self.run.as_ref()?;
        if now_ms.saturating_sub(run.moved_ms) < STALL_MS {
            return None;
        }
        let progress = (run.acked, run.bytes.len());
        self.run = None;
        Some(progress)
    }
}

/// What the receiver does with one part.
#[derive(Debug)]
pub struct Received {
    /// The acknowledgement to send back.
    pub ack: Message,
    /// The whole message, once the last part arrived.
    pub whole: Option<Vec<u8>>,
    /// Why the part was not taken, for the log.
    pub dropped: Option<String>,
}

/// The receiving side of one peer's large messages; it outlives
/// connections, so that a transfer resumes where it stopped.
#[derive(Debug)]
pub struct Incoming {
    me: u64,
    run: Option<(u64, u64, Vec<u8>)>,
    /// The last transfer completed (id, total): its late parts are
    /// acknowledged as done, never assembled a second time.
    done: Option<(u64, u64)>,
}

impl Incoming {
    /// A receiver at node `me`.
    pub fn new(me: u64) -> Self {
        Incoming {
            me,
            run: None,
            done: None,
        }
    }

    /// Takes one part of transfer `id`.
    pub fn push(&mut self, id: u64, offset: u64, total: u64, crc32: u32, bytes: &[u8]) -> Received {
        let too_large = total > MAX_SNAPSHOT_LEN as u64;
        if too_large {
            // Acknowledge all of it so the sender stops; nothing is stepped.
            self.run = None;
            return self.answer(
                id,
                total,
                None,
                Some(format!(
                    "a {total}-byte message exceeds {MAX_SNAPSHOT_LEN} bytes"
                )),
            );
        }
        if let Some((done, total)) = self.done.filter(|(done, _)| *done == id) {
            return self.answer(done, total, None, None);
        }
        if offset == 0 && self.run.as_ref().is_none_or(|(i, _, _)| *i != id) {
            self.run = Some((id, total, Vec::new()));
        }
        let Some((run_id, run_total, buf)) = self.run.as_mut() else {
            return self.answer(
                id,
                0,
                None,
                Some(format!("transfer {id} unknown here; restart it")),
            );
        };
        if *run_id != id || *run_total != total {
            return self.answer(
                id,
                0,
                None,
                Some(format!("transfer {id} unknown here; restart it")),
            );
        }
        let held = buf.len() as u64;
        if offset != held {
            // A resend of what we hold, or a gap: ask for what follows.
            return self.answer(id, held, None, None);
        }
        if crc32fast::hash(bytes) != crc32 || held + bytes.len() as u64 > total {
            let why = format!("part at byte {offset} of transfer {id} is corrupt");
            return self.answer(id, held, None, Some(why));
        }
        buf.extend_from_slice(bytes);
        let held = buf.len() as u64;
        if held < total {
            return self.answer(id, held, None, None);
        }
        let whole = self.run.take().map(|(_, _, buf)| buf);
        self.done = Some((id, total));
        self.answer(id, total, whole, None)
    }

    fn answer(
        &self,
        id: u64,
        received: u64,
        whole: Option<Vec<u8>>,
        dropped: Option<String>,
    ) -> Received {
        Received {
            ack: Message::RaftChunkAck {
                from: self.me,
                id,
                received,
            },
            whole,
            dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn deliver(rx: &mut Incoming, part: &Message) -> Received {
        let Message::RaftChunk {
            id,
            offset,
            total,
            crc32,
            bytes,
            ..
        } = part
        else {
            panic!("a part");
        };
        rx.push(*id, *offset, *total, *crc32, bytes)
    }

    fn ack_of(r: &Received) -> (u64, u64) {
        match r.ack {
            Message::RaftChunkAck { id, received, .. } => (id, received),
            _ => panic!("an ack"),
        }
    }

    #[test]
    fn a_large_message_arrives_whole_within_the_window() {
        let big: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        let mut tx = Outgoing::new(2, CHUNK_BYTES, 100);
        let mut rx = Incoming::new(1);
        assert!(tx.is_large(&big) && tx.start(big.clone(), 0));
        assert!(!tx.start(vec![1; 10], 0), "one transfer at a time");
        let mut whole = None;
        while let Some(part) = tx.next_part() {
            let r = deliver(&mut rx, &part);
            let (id, received) = ack_of(&r);
            tx.acked(id, received, 0);
            whole = whole.or(r.whole);
        }
        assert_eq!(whole, Some(big));
        assert!(!tx.busy());
    }

    #[test]
    fn a_transfer_is_given_up_only_when_its_acks_stop_moving() {
        let mut tx = Outgoing::new(2, 10, 0);
        assert!(tx.start(vec![0; 100], 1_000));
        let id = |m: Option<Message>| match m {
            Some(Message::RaftChunk { id, .. }) => id,
            other => panic!("{other:?}"),
        };
        let first = id(tx.next_part());
        // Progress at 20 s keeps it alive past 30 s from its start.
        assert_eq!(tx.give_up_if_stalled(20_000), None);
        tx.acked(first, 10, 20_000);
        assert_eq!(tx.give_up_if_stalled(40_000), None);
        // A repeated ack is no progress.
        tx.acked(first, 10, 45_000);
        assert_eq!(tx.give_up_if_stalled(50_000 - 1), None);
        assert_eq!(tx.give_up_if_stalled(50_000), Some((10, 100)));
        assert!(!tx.busy());
        assert!(
            tx.start(vec![1; 100], 50_000),
            "the next transfer may start"
        );
    }

    #[test]
    fn the_window_bounds_parts_in_flight() {
        let mut tx = Outgoing::new(2, 10, 0);
        tx.start(vec![0; 1000], 0);
        let sent = std::iter::from_fn(|| tx.next_part()).count();
        assert_eq!(sent, WINDOW);
    }

    #[test]
    fn corrupt_and_unknown_parts_are_not_taken() {
        let mut tx = Outgoing::new(2, 100, 0);
        tx.start(vec![5u8; 250], 0);
        let mut rx = Incoming::new(1);
        let mut first = tx.next_part().unwrap();
        if let Message::RaftChunk { bytes, .. } = &mut first {
            bytes[3] ^= 1;
        }
        let r = deliver(&mut rx, &first);
        assert_eq!(ack_of(&r).1, 0);
        assert!(r.dropped.unwrap().contains("corrupt"));
        // A part of a transfer the receiver never saw starting.
        let mut rx = Incoming::new(1);
        let _ = tx.next_part();
        let second = tx.next_part().unwrap();
        let r = deliver(&mut rx, &second);
        assert_eq!(ack_of(&r).1, 0);
        assert!(r.whole.is_none());
    }

    #[test]
    fn an_oversized_transfer_is_refused_and_ends() {
        let mut rx = Incoming::new(1);
        let total = MAX_SNAPSHOT_LEN as u64 + 1;
        let r = rx.push(9, 0, total, crc32fast::hash(b"x"), b"x");
        assert_eq!(ack_of(&r), (9, total));
        assert!(r.whole.is_none() && r.dropped.is_some());
    }

    /// Connections drop at random points, parts and acks in flight are
    /// lost with them; the transfer resumes and the receiver gets the
    /// message exactly once, intact, without resending from the start.
    #[test]
    fn transfers_resume_after_lost_connections() {
        for seed in 0..200u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let len: usize = rng.gen_range(1..5_000);
            let big: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let mut tx = Outgoing::new(2, 64, seed);
            let mut rx = Incoming::new(1);
            tx.start(big.clone(), 0);
            let (mut wholes, mut parts_sent) = (Vec::new(), 0usize);
            for _round in 0..10_000 {
                if !tx.busy() {
                    break;
                }
                // One connection: a window of parts, some delivered.
                let mut in_flight = Vec::new();
                while let Some(p) = tx.next_part() {
                    in_flight.push(p);
                }
                parts_sent += in_flight.len();
                let cut = rng.gen_bool(0.3);
                let keep = if cut {
                    rng.gen_range(0..=in_flight.len())
                } else {
                    in_flight.len()
                };
                for p in &in_flight[..keep] {
                    let r = deliver(&mut rx, p);
                    wholes.extend(r.whole.clone());
                    if !cut || rng.gen_bool(0.5) {
                        let (id, received) = ack_of(&r);
                        tx.acked(id, received, 0);
                    }
                }
                if cut {
                    tx.reconnected();
                }
            }
            assert_eq!(wholes, vec![big.clone()], "seed {seed}");
            let parts = len.div_ceil(64);
            assert!(
                parts_sent < 4 * parts + 40 * WINDOW,
                "seed {seed}: {parts_sent} parts for {parts}"
            );
        }
    }
}
