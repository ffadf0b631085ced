//! Chunk buffers, pure: building a chunk from new data (whole or
//! read-modify-write), and copying a region part out of a chunk.
//!
//! A chunk buffer always holds `chunk_shape` elements, row-major,
//! little-endian; the part of an edge chunk outside the array is padding
//! holding the fill value.

use floe_protocol::region::{chunk_region, copy_box};
use floe_protocol::{ArrayMeta, ChunkPart, FloeError, Region, Span};

use crate::data::ArrayData;
use crate::format::chunk_bytes;

/// A full chunk buffer holding only the fill value.
pub fn fill_chunk(meta: &ArrayMeta) -> Vec<u8> {
    let size = meta.dtype.size();
    let mut buf = vec![0u8; chunk_bytes(meta)];
    if meta.fill_value.len() == size && meta.fill_value.iter().any(|&b| b != 0) {
        for elem in buf.chunks_exact_mut(size) {
            elem.copy_from_slice(&meta.fill_value);
        }
    }
    buf
}

/// The chunks of `meta`'s grid that a session must write as fill after it
/// shrank an array to `min_shape` and grew it again: those starting at or
/// past `min_shape` along some dimension, within `base_shape`'s grid (the
/// base commit may hold data there that the shrink cut off; past the base's
/// grid there is none). The chunk straddling `min_shape` was already
/// rewritten by the shrink. Row-major order.
pub fn regrown_chunks(meta: &ArrayMeta, min_shape: &[u64], base_shape: &[u64]) -> Vec<Vec<u64>> {
    let ch = &meta.chunk_shape;
    let first_cut: Vec<u64> = min_shape
        .iter()
        .zip(ch)
        .map(|(n, c)| n.div_ceil(*c))
        .collect();
    // The elements both the grown array and the base's chunk grid cover.
    let both = Region(
        (0..ch.len())
            .map(|d| Span {
                lo: 0,
                hi: meta.shape[d].min(base_shape[d].div_ceil(ch[d]) * ch[d]),
            })
            .collect(),
    );
    if both.0.iter().any(Span::is_empty) {
        return Vec::new();
    }
    both.chunks(meta)
        .into_iter()
        .filter(|coord| coord.iter().zip(&first_cut).any(|(c, f)| c >= f))
        .collect()
}

/// True when `part` covers every element of its chunk that lies inside the
/// array, so the new chunk does not depend on the previous one.
pub fn covers_whole_chunk(meta: &ArrayMeta, part: &ChunkPart) -> bool {
    let chunk = chunk_region(&part.coord, meta);
    part.in_chunk == chunk.relative_to(&chunk)
}

fn lows(region: &Region) -> Vec<u64> {
    region.0.iter().map(|s| s.lo).collect()
}

fn check_part(meta: &ArrayMeta, part: &ChunkPart, other_shape: &[u64]) -> Result<(), FloeError> {
    let rank = meta.shape.len();
    let ok = part.coord.len() == rank
        && part.in_chunk.rank() == rank
        && part.in_region.rank() == rank
        && other_shape.len() == rank
        && part.in_chunk.shape() == part.in_region.shape()
        && part
            .in_chunk
            .0
            .iter()
            .zip(&meta.chunk_shape)
            .all(|(s, &c)| s.lo < s.hi && s.hi <= c)
        && part
            .in_region
            .0
            .iter()
            .zip(other_shape)
            .all(|(s, &n)| s.lo < s.hi && s.hi <= n);
    if ok {
        Ok(())
    } else {
        Err(FloeError::Codec(format!(
            "chunk part {:?} ({} in chunk, {} in region) does not fit a block of shape {other_shape:?}",
            part.coord, part.in_chunk, part.in_region
        )))
    }
}

fn check_data(data: &ArrayData) -> Result<(), FloeError> {
    data.check()
        .map_err(|e| FloeError::Codec(format!("bad data block: {e}")))
}

/// Builds the new buffer of the chunk `part.coord` after writing `data`
/// (the data of the whole region `part` was cut from) into it.
///
/// When `part` covers the whole chunk the result starts from the fill value
/// (only padding keeps it); otherwise it starts from `previous`, the chunk's
/// current buffer, or the fill value when the chunk was never written
/// (read-modify-write).
pub fn patch_chunk(
    meta: &ArrayMeta,
    previous: Option<&[u8]>,
    part: &ChunkPart,
    data: &ArrayData,
) -> Result<Vec<u8>, FloeError> {
    check_data(data)?;
    check_part(meta, part, &data.shape)?;
    if data.dtype != meta.dtype {
        return Err(FloeError::Codec(format!(
            "data of {} written to a chunk of {}",
            data.dtype, meta.dtype
        )));
    }
    let mut buf = match previous {
        Some(prev) if !covers_whole_chunk(meta, part) => {
            if prev.len() != chunk_bytes(meta) {
                return Err(FloeError::Codec(format!(
                    "previous chunk holds {} bytes, expected {}",
                    prev.len(),
                    chunk_bytes(meta)
                )));
            }
            prev.to_vec()
        }
        _ => fill_chunk(meta),
    };
    copy_box(
        &data.bytes,
        &data.shape,
        &lows(&part.in_region),
        &mut buf,
        &meta.chunk_shape,
        &lows(&part.in_chunk),
        &part.in_chunk.shape(),
        meta.dtype.size(),
    );
    Ok(buf)
}

/// Copies the part of chunk `part.coord` (its full buffer `chunk`) that a
/// read region covers into `out`, the output block of that region.
pub fn extract_part(
    meta: &ArrayMeta,
    chunk: &[u8],
    part: &ChunkPart,
    out: &mut ArrayData,
) -> Result<(), FloeError> {
    check_data(out)?;
    check_part(meta, part, &out.shape)?;
    if chunk.len() != chunk_bytes(meta) || out.dtype != meta.dtype {
        return Err(FloeError::Codec(format!(
            "chunk of {} bytes does not fit {} chunks of {} bytes",
            chunk.len(),
            meta.dtype,
            chunk_bytes(meta)
        )));
    }
    copy_box(
        chunk,
        &meta.chunk_shape,
        &lows(&part.in_chunk),
        &mut out.bytes,
        &out.shape,
        &lows(&part.in_region),
        &part.in_chunk.shape(),
        meta.dtype.size(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::DType;

    fn meta() -> ArrayMeta {
        // 25 x 7 array of i32, chunks 10 x 4, fill -1: edge chunks along both dims.
        ArrayMeta::new(vec![25, 7], vec![10, 4], DType::I32, -1.0).unwrap()
    }

    fn block(region: &Region, base: i32) -> ArrayData {
        let n = region.elements() as i32;
        let vals: Vec<i32> = (0..n).map(|i| base + i).collect();
        ArrayData::from_slice(&region.shape(), &vals).unwrap()
    }

    fn as_i32(buf: &[u8]) -> Vec<i32> {
        buf.chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn whole_chunk_ignores_previous_and_pads_edges_with_fill() {
        let m = meta();
        // The corner edge chunk [2, 1] covers 20:25, 4:7 — 5 x 3 of a 10 x 4 chunk.
        let region: Region = "20:25,4:7".parse().unwrap();
        let parts = region.chunk_parts(&m);
        assert_eq!(parts.len(), 1);
        assert!(covers_whole_chunk(&m, &parts[0]));
        let data = block(&region, 100);
        let junk = vec![0x55u8; chunk_bytes(&m)];
        let buf = patch_chunk(&m, Some(&junk), &parts[0], &data).unwrap();
        let vals = as_i32(&buf);
        assert_eq!(vals.len(), 40);
        for r in 0..10 {
            for c in 0..4 {
                let v = vals[r * 4 + c];
                if r < 5 && c < 3 {
                    assert_eq!(v, 100 + (r * 3 + c) as i32);
                } else {
                    assert_eq!(v, -1, "padding at {r},{c}");
                }
            }
        }
    }

    #[test]
    fn partial_chunk_is_read_modify_written() {
        let m = meta();
        let region: Region = "12:14,1:3".parse().unwrap();
        let parts = region.chunk_parts(&m);
        assert_eq!(parts[0].coord, vec![1, 0]);
        assert!(!covers_whole_chunk(&m, &parts[0]));
        let prev: Vec<u8> = (0..40i32).flat_map(|v| v.to_le_bytes()).collect();
        let buf = patch_chunk(&m, Some(&prev), &parts[0], &block(&region, 500)).unwrap();
        let vals = as_i32(&buf);
        let mut expected: Vec<i32> = (0..40).collect();
        expected[2 * 4 + 1] = 500;
        expected[2 * 4 + 2] = 501;
        expected[3 * 4 + 1] = 502;
        expected[3 * 4 + 2] = 503;
        assert_eq!(vals, expected);
        // Without a previous chunk the rest is fill.
        let fresh = as_i32(&patch_chunk(&m, None, &parts[0], &block(&region, 500)).unwrap());
        assert_eq!(fresh.iter().filter(|&&v| v == -1).count(), 36);
    }

    #[test]
    fn a_region_spanning_chunks_round_trips_through_patch_and_extract() {
        let m = meta();
        let region: Region = "5:23,2:7".parse().unwrap();
        let data = block(&region, 0);
        let mut out = ArrayData::filled(&m, &region.shape()).unwrap();
        for part in region.chunk_parts(&m) {
            let chunk = patch_chunk(&m, None, &part, &data).unwrap();
            extract_part(&m, &chunk, &part, &mut out).unwrap();
        }
        assert_eq!(out, data);
    }

    #[test]
    fn regrown_chunks_are_those_past_the_smallest_shape_within_the_base() {
        let meta = |shape: Vec<u64>, chunks: Vec<u64>| {
            ArrayMeta::new(shape, chunks, DType::I32, 0.0).unwrap()
        };
        // 1-d: base 25, shrunk to 15 (chunk 1 rewritten then), grown to 25.
        assert_eq!(
            regrown_chunks(&meta(vec![25], vec![10]), &[15], &[25]),
            vec![vec![2]]
        );
        // Aligned shrink to 10: chunks 1 and 2 held base data.
        assert_eq!(
            regrown_chunks(&meta(vec![40], vec![10]), &[10], &[25]),
            vec![vec![1], vec![2]]
        );
        // Never shrunk below the base: nothing.
        assert!(regrown_chunks(&meta(vec![40], vec![10]), &[25], &[25]).is_empty());
        // 2-d: shrunk along rows only.
        assert_eq!(
            regrown_chunks(&meta(vec![20, 20], vec![10, 10]), &[10, 20], &[20, 20]),
            vec![vec![1, 0], vec![1, 1]]
        );
        // Shrunk to nothing.
        assert_eq!(
            regrown_chunks(&meta(vec![20], vec![10]), &[0], &[20]).len(),
            2
        );
    }

    #[test]
    fn mismatched_inputs_are_errors_not_panics() {
        let m = meta();
        let region: Region = "0:10,0:4".parse().unwrap();
        let part = &region.chunk_parts(&m)[0];
        let small = ArrayData::from_slice(&[2, 2], &[1i32, 2, 3, 4]).unwrap();
        assert!(patch_chunk(&m, None, part, &small).is_err());
        let wrong_type = ArrayData::from_slice(&[10, 4], &[0u8; 40]).unwrap();
        assert!(patch_chunk(&m, None, part, &wrong_type).is_err());
        let partial: Region = "0:5,0:4".parse().unwrap();
        let ppart = &partial.chunk_parts(&m)[0];
        assert!(patch_chunk(&m, Some(&[0u8; 3]), ppart, &block(&partial, 0)).is_err());
        let mut out = ArrayData::filled(&m, &[10, 4]).unwrap();
        assert!(extract_part(&m, &[0u8; 8], part, &mut out).is_err());
    }
}
