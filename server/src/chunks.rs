//! Raft messages larger than one frame (state-machine snapshots) travel
//! as a run of [`Message::RaftChunk`] parts of bounded size, each with its
//! CRC-32; the receiver reassembles them in order and steps the whole
//! message. A broken run (a missing, reordered or corrupted part, or a new
//! run starting) is dropped: Raft sends the snapshot again.

use floe_protocol::codec::MAX_SNAPSHOT_LEN;
use floe_protocol::Message;

/// The default part size.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Splits `bytes` (one Raft message) into parts of at most `chunk` bytes.
pub fn split(from: u64, id: u64, bytes: &[u8], chunk: usize) -> Vec<Message> {
    let parts: Vec<&[u8]> = bytes.chunks(chunk.max(1)).collect();
    let count = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(seq, part)| Message::RaftChunk {
            from,
            id,
            seq: seq as u32,
            last: seq + 1 == count,
            crc32: crc32fast::hash(part),
            bytes: part.to_vec(),
        })
        .collect()
}

/// One peer's run being reassembled.
#[derive(Debug, Default)]
pub struct Reassembler {
    id: Option<u64>,
    next: u32,
    buf: Vec<u8>,
}

impl Reassembler {
    /// Takes the next part; returns the whole message after the last one,
    /// or why the run was dropped.
    pub fn push(
        &mut self,
        id: u64,
        seq: u32,
        last: bool,
        crc32: u32,
        bytes: &[u8],
    ) -> Result<Option<Vec<u8>>, String> {
        if seq == 0 {
            self.id = Some(id);
            self.next = 0;
            self.buf.clear();
        }
        if self.id != Some(id) || self.next != seq {
            self.id = None;
            return Err(format!("part {seq} of run {id} out of order; run dropped"));
        }
        if crc32fast::hash(bytes) != crc32 {
            self.id = None;
            return Err(format!("part {seq} of run {id} is corrupt; run dropped"));
        }
        if self.buf.len() + bytes.len() > MAX_SNAPSHOT_LEN {
            self.id = None;
            return Err(format!(
                "run {id} exceeds {MAX_SNAPSHOT_LEN} bytes; dropped"
            ));
        }
        self.buf.extend_from_slice(bytes);
        self.next += 1;
        if !last {
            return Ok(None);
        }
        self.id = None;
        Ok(Some(std::mem::take(&mut self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_all(r: &mut Reassembler, parts: &[Message]) -> Result<Option<Vec<u8>>, String> {
        let mut out = None;
        for p in parts {
            let Message::RaftChunk {
                id,
                seq,
                last,
                crc32,
                bytes,
                ..
            } = p
            else {
                panic!("a chunk");
            };
            out = r.push(*id, *seq, *last, *crc32, bytes)?;
        }
        Ok(out)
    }

    #[test]
    fn a_large_message_comes_back_whole() {
        let big: Vec<u8> = (0..3_500_000u32).map(|i| (i % 251) as u8).collect();
        let parts = split(2, 7, &big, CHUNK_BYTES);
        assert_eq!(parts.len(), 4);
        let mut r = Reassembler::default();
        assert_eq!(push_all(&mut r, &parts).unwrap(), Some(big.clone()));
        // And again, a second run on the same link.
        let parts = split(2, 8, &big[..10], CHUNK_BYTES);
        assert_eq!(push_all(&mut r, &parts).unwrap(), Some(big[..10].to_vec()));
    }

    #[test]
    fn broken_runs_are_dropped() {
        let big = vec![5u8; 2_500_000];
        let mut parts = split(2, 1, &big, CHUNK_BYTES);
        if let Message::RaftChunk { bytes, .. } = &mut parts[1] {
            bytes[10] ^= 1;
        }
        let mut r = Reassembler::default();
        assert!(push_all(&mut r, &parts).unwrap_err().contains("corrupt"));
        let parts = split(2, 2, &big, CHUNK_BYTES);
        let mut r = Reassembler::default();
        let skipped = [parts[0].clone(), parts[2].clone()];
        assert!(push_all(&mut r, &skipped)
            .unwrap_err()
            .contains("out of order"));
        // A fresh run after a broken one is fine.
        assert_eq!(push_all(&mut r, &parts).unwrap(), Some(big));
    }
}
