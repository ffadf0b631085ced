//! The trace: every event is folded into a running hash (same seed, same
//! hash), the last events are kept for a failure report, and the whole trace
//! is printed on request. Events are stored as plain fields and only turned
//! into text when printed, so tracing costs little when nobody reads it.

use std::collections::VecDeque;

/// How many trace lines a failure report shows.
pub const TAIL: usize = 80;

/// What a trace record describes; decides how its numbers are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A raft message delivered: `a` from, `b` to, `c` message type.
    Raft,
    /// A client request delivered: `a` client, `b` node, `c` seq, `d` request code.
    Request,
    /// A reply delivered: `a` node, `b` client, `c` seq, `d` outcome code.
    Reply,
    /// A node applied `b` with digest `c`: `a` node.
    Applied,
    /// A node's role changed: `a` node, `b` role code, `c` term, `d` leader.
    Role,
    /// An fsync finished: `a` node, `b` token.
    Persisted,
    /// A put finished: `a` client, `b` token, `c` 1 on success.
    Put,
    /// A get finished: `a` client, `b` token, `c` 1 when found, `d` 0 when it failed.
    Get,
    /// A client timer fired: `a` client, `b` token.
    Timer,
    /// Anything else: a static label and numbers.
    Event(&'static str),
    /// A rare event with a human-readable description.
    Note(&'static str),
}

struct Rec {
    time: u64,
    kind: Kind,
    n: [u64; 4],
    note: Option<String>,
}

const RAFT_TYPES: [&str; 19] = [
    "Hup",
    "Beat",
    "Propose",
    "Append",
    "AppendResp",
    "RequestVote",
    "RequestVoteResp",
    "Snapshot",
    "Heartbeat",
    "HeartbeatResp",
    "Unreachable",
    "SnapStatus",
    "CheckQuorum",
    "TransferLeader",
    "TimeoutNow",
    "ReadIndex",
    "ReadIndexResp",
    "RequestPreVote",
    "RequestPreVoteResp",
];

const ROLES: [&str; 4] = ["follower", "pre-candidate", "candidate", "leader"];

/// Names of request codes (see `codes::request`).
pub const REQUESTS: [&str; 22] = [
    "CreateRepo",
    "CreateBranch",
    "CreateTag",
    "Commit",
    "OpenSession",
    "ClaimTask",
    "RenewLease",
    "CompleteTask",
    "Contribute",
    "CommitSession",
    "AbortSession",
    "RecordCheckpoint",
    "Checkout",
    "ResolveTag",
    "GetCommit",
    "Log",
    "CanFastForward",
    "Session",
    "Refs",
    "OpenClient",
    "ChangeMembers",
    "OpenSessions",
];

impl Rec {
    fn line(&self) -> String {
        let [a, b, c, d] = self.n;
        let t = self.time;
        let name = |table: &[&'static str], i: u64| *table.get(i as usize).unwrap_or(&"?");
        let body = match self.kind {
            Kind::Raft => format!("raft      n{a} -> n{b} {}", name(&RAFT_TYPES, c)),
            Kind::Request => format!("request   c{a} -> n{b} seq {c} {}", name(&REQUESTS, d)),
            Kind::Reply => format!(
                "reply     n{a} -> c{b} seq {c} {}",
                crate::codes::outcome_name(d)
            ),
            Kind::Applied => format!("applied   n{a} index {b} digest {c:016x}"),
            Kind::Role => format!("role      n{a} {} term {c} leader {d}", name(&ROLES, b)),
            Kind::Persisted => format!("persisted n{a} token {b}"),
            Kind::Put => format!("put-done  c{a} token {b} ok {c}"),
            Kind::Get => format!("get-done  c{a} token {b} found {c} ok {d}"),
            Kind::Timer => format!("timer     c{a} token {b}"),
            Kind::Event(label) => format!("{label:<9} {a} {b} {c} {d}"),
            Kind::Note(label) => format!("{label:<9} {}", self.note.as_deref().unwrap_or("")),
        };
        format!("{t:>8}ms {body}")
    }
}

/// A running FNV-1a hash of the events plus two tail buffers: every
/// event, and client-level events only (requests, replies, store, timers,
/// faults and notes — no raft traffic), which explain a violation found by
/// the end-of-run checks better than the last heartbeats do.
pub struct Trace {
    hash: u64,
    tail: VecDeque<Rec>,
    client_tail: VecDeque<Rec>,
    print: bool,
    events: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    /// A trace; with `print`, every line is also printed as it happens.
    pub fn new(print: bool) -> Self {
        Trace {
            hash: FNV_OFFSET,
            tail: VecDeque::with_capacity(TAIL + 1),
            client_tail: VecDeque::with_capacity(TAIL + 1),
            print,
            events: 0,
        }
    }

    fn mix(&mut self, word: u64) {
        // FNV-1a over the word's bytes, unrolled on the integer.
        for i in 0..8 {
            self.hash ^= (word >> (8 * i)) & 0xff;
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    fn mix_str(&mut self, s: &str) {
        for &b in s.as_bytes() {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    fn push(&mut self, rec: Rec) {
        self.events += 1;
        self.mix(rec.time);
        match rec.kind {
            Kind::Event(label) | Kind::Note(label) => self.mix_str(label),
            kind => self.mix(kind_code(kind)),
        }
        for n in rec.n {
            self.mix(n);
        }
        if let Some(n) = rec.note.as_deref() {
            self.mix_str(n);
        }
        if self.print {
            print_line(&rec.line());
        }
        if !matches!(
            rec.kind,
            Kind::Raft | Kind::Applied | Kind::Persisted | Kind::Role
        ) {
            if self.client_tail.len() == TAIL {
                self.client_tail.pop_front();
            }
            self.client_tail.push_back(Rec {
                note: rec.note.clone(),
                ..rec
            });
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(rec);
    }

    /// Records a typed event with up to four numbers.
    pub fn rec(&mut self, time: u64, kind: Kind, n: [u64; 4]) {
        self.push(Rec {
            time,
            kind,
            n,
            note: None,
        });
    }

    /// Records a frequent, cheap event (`kind a b`).
    pub fn event(&mut self, time: u64, kind: &'static str, a: u64, b: u64) {
        self.rec(time, Kind::Event(kind), [a, b, 0, 0]);
    }

    /// Records a rarer event with a human-readable description.
    pub fn note(&mut self, time: u64, kind: &'static str, note: String) {
        self.push(Rec {
            time,
            kind: Kind::Note(kind),
            n: [0; 4],
            note: Some(note),
        });
    }

    /// True when every event is printed (so callers may spend on notes).
    pub fn printing(&self) -> bool {
        self.print
    }

    /// The running hash.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The last lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().map(Rec::line).collect()
    }

    /// The last client-level lines (no raft traffic), oldest first.
    pub fn client_tail(&self) -> Vec<String> {
        self.client_tail.iter().map(Rec::line).collect()
    }
}

/// Prints a trace line (through `println!`, so test harnesses capture it).
pub fn print_line(line: &str) {
    println!("{line}");
}

fn kind_code(kind: Kind) -> u64 {
    match kind {
        Kind::Raft => 1,
        Kind::Request => 2,
        Kind::Reply => 3,
        Kind::Applied => 4,
        Kind::Role => 5,
        Kind::Persisted => 6,
        Kind::Put => 7,
        Kind::Get => 8,
        Kind::Timer => 9,
        Kind::Event(_) | Kind::Note(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_events_give_equal_hashes_and_any_difference_changes_it() {
        let run = |x: u64| {
            let mut t = Trace::new(false);
            t.event(1, "tick", 1, 0);
            t.note(2, "commit", format!("w{x} landed"));
            t.rec(3, Kind::Raft, [1, 2, 3, 0]);
            t.hash()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn lines_are_readable() {
        let mut t = Trace::new(false);
        t.rec(12, Kind::Raft, [1, 2, 3, 0]);
        t.rec(13, Kind::Request, [4, 1, 7, 3]);
        let tail = t.tail();
        assert!(tail[0].contains("n1 -> n2 Append"), "{}", tail[0]);
        assert!(tail[1].contains("c4 -> n1 seq 7 Commit"), "{}", tail[1]);
    }
}
