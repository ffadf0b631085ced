//! The trace: every event is folded into a running hash (same seed, same
//! hash), the last events are kept for a failure report, and the whole trace
//! is printed on request. Events are stored as plain fields and only turned
//! into text when printed, so tracing costs little when nobody reads it.

use std::collections::VecDeque;

/// How many trace lines a failure report shows.
pub const TAIL: usize = 80;

struct Rec {
    time: u64,
    kind: &'static str,
    a: u64,
    b: u64,
    note: Option<String>,
}

impl Rec {
    fn line(&self) -> String {
        match &self.note {
            Some(n) => format!("{:>8}ms {:<12} {n}", self.time, self.kind),
            None => format!("{:>8}ms {:<12} {} {}", self.time, self.kind, self.a, self.b),
        }
    }
}

/// A running FNV-1a hash of the events plus a tail buffer.
pub struct Trace {
    hash: u64,
    tail: VecDeque<Rec>,
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
            print,
            events: 0,
        }
    }

    fn mix_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }

    fn push(&mut self, rec: Rec) {
        self.events += 1;
        self.mix_bytes(&rec.time.to_le_bytes());
        self.mix_bytes(rec.kind.as_bytes());
        self.mix_bytes(&rec.a.to_le_bytes());
        self.mix_bytes(&rec.b.to_le_bytes());
        if let Some(n) = rec.note.as_deref() {
            for &b in n.as_bytes() {
                self.hash ^= u64::from(b);
                self.hash = self.hash.wrapping_mul(FNV_PRIME);
            }
        }
        if self.print {
            println!("{}", rec.line());
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(rec);
    }

    /// Records a frequent, cheap event (`kind a b`).
    pub fn event(&mut self, time: u64, kind: &'static str, a: u64, b: u64) {
        self.push(Rec {
            time,
            kind,
            a,
            b,
            note: None,
        });
    }

    /// Records a rarer event with a human-readable description.
    pub fn note(&mut self, time: u64, kind: &'static str, note: String) {
        self.push(Rec {
            time,
            kind,
            a: 0,
            b: 0,
            note: Some(note),
        });
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
            t.hash()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
