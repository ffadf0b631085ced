//! raft-rs's own log lines (it logs through `slog`) as `tracing` events
//! with target `raft`, so an operator sees raft's view of an incident in
//! the node's log. One level down: raft's info lines (every vote, every
//! message of a stale term) would outnumber floe's own several times in a
//! node's info log, so they are debug here, its debug lines trace, and its
//! warnings (a leader stepping down for lack of a quorum) info:
//! `RUST_LOG=info,raft=debug` shows raft's elections. The key-value pairs
//! raft attaches (term, index, from, ...) follow the message. Records at
//! a level the subscriber does not want are dropped before formatting,
//! so the simulation pays nothing for them.

use std::fmt::{self, Write};

use slog::{Drain, Level, OwnedKVList, Record, Serializer, KV};

/// Forwards raft-rs's slog records to `tracing`.
pub(super) struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = match record.level() {
            Level::Critical | Level::Error => tracing::Level::ERROR,
            Level::Warning => tracing::Level::INFO,
            Level::Info => tracing::Level::DEBUG,
            Level::Debug | Level::Trace => tracing::Level::TRACE,
        };
        if !enabled(level) {
            return Ok(());
        }
        let mut line = Line(String::new());
        // A full line stops the formatting (the write fails), so a message
        // carrying a snapshot of megabytes costs no more than its first
        // bytes: raft-rs's debug line for a sent snapshot prints the data.
        let _ = write!(line, "{}", record.msg());
        let _ = record.kv().serialize(record, &mut line);
        let _ = values.serialize(record, &mut line);
        if line.0.len() >= MAX_LINE {
            line.0.push_str(" …");
        }
        emit(level, &line.0);
        Ok(())
    }
}

fn enabled(level: tracing::Level) -> bool {
    match level {
        tracing::Level::ERROR => tracing::enabled!(target: "raft", tracing::Level::ERROR),
        tracing::Level::WARN => tracing::enabled!(target: "raft", tracing::Level::WARN),
        tracing::Level::INFO => tracing::enabled!(target: "raft", tracing::Level::INFO),
        tracing::Level::DEBUG => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        _ => tracing::enabled!(target: "raft", tracing::Level::TRACE),
    }
}

fn emit(level: tracing::Level, line: &str) {
    match level {
        tracing::Level::ERROR => tracing::error!(target: "raft", "{line}"),
        tracing::Level::WARN => tracing::warn!(target: "raft", "{line}"),
        tracing::Level::INFO => tracing::info!(target: "raft", "{line}"),
        tracing::Level::DEBUG => tracing::debug!(target: "raft", "{line}"),
        _ => tracing::trace!(target: "raft", "{line}"),
    }
}

/// A log line is cut at this many bytes.
const MAX_LINE: usize = 2048;

/// A log line: the message, then ` key=value` per pair; it takes at most
/// [`MAX_LINE`] bytes and refuses the rest.
struct Line(String);

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_LINE.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.0.push_str(&s[..end]);
        Err(fmt::Error)
    }
}

impl Serializer for Line {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self, " {key}={val}");
        Ok(())
    }
}

/// The logger raft-rs is given.
pub(super) fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_key_values() {
        let mut line = Line("became leader".into());
        let kv = slog::o!("term" => 7, "raft_id" => 2);
        let logger = slog::Logger::root(slog::Discard, kv);
        let record = slog::record_static!(Level::Info, "");
        let args = format_args!("became leader");
        let r = Record::new(&record, &args, slog::BorrowedKV(&()));
        let _ = logger.list().serialize(&r, &mut line);
        assert!(line.0.starts_with("became leader"), "{}", line.0);
        assert!(line.0.contains("term=7"), "{}", line.0);
        assert!(line.0.contains("raft_id=2"), "{}", line.0);
    }

    #[test]
    fn a_huge_message_is_cut_not_formatted_whole() {
        let mut line = Line(String::new());
        let huge = "é".repeat(1 << 20);
        assert!(write!(line, "snapshot {huge}").is_err());
        assert!(line.0.len() <= MAX_LINE, "{}", line.0.len());
        assert!(line.0.starts_with("snapshot é"));
    }
}
