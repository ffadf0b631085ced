//! Regions: per-dimension half-open ranges, in the seed's notation
//! (`0:20`, `15:30`, `0:100,20:40`), and their mapping onto the chunk grid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::array::ArrayMeta;
use crate::error::GeometryError;

/// A half-open range `[lo, hi)` along one dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First index inside.
    pub lo: u64,
    /// First index past the end.
    pub hi: u64,
}

impl Span {
    /// Number of indices covered.
    pub fn len(&self) -> u64 {
        self.hi.saturating_sub(self.lo)
    }

    /// True when the span covers nothing.
    pub fn is_empty(&self) -> bool {
        self.hi <= self.lo
    }
}

/// A box in index space: one [`Span`] per dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region(pub Vec<Span>);

/// The part of one chunk that a region covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPart {
    /// Chunk coordinates in the grid.
    pub coord: Vec<u64>,
    /// The covered box, relative to the chunk's origin.
    pub in_chunk: Region,
    /// The same box, relative to the region's origin.
    pub in_region: Region,
}

impl Region {
    /// Builds a region from `(lo, hi)` pairs.
    pub fn new(spans: &[(u64, u64)]) -> Self {
        Region(spans.iter().map(|&(lo, hi)| Span { lo, hi }).collect())
    }

    /// The whole array.
    pub fn full(meta: &ArrayMeta) -> Self {
        Region(meta.shape.iter().map(|&hi| Span { lo: 0, hi }).collect())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Extent along each dimension.
    pub fn shape(&self) -> Vec<u64> {
        self.0.iter().map(Span::len).collect()
    }

    /// Number of elements covered.
    pub fn elements(&self) -> u64 {
        self.0.iter().map(Span::len).product()
    }

    /// Checks rank, emptiness and bounds against `meta`.
    pub fn validate(&self, meta: &ArrayMeta) -> Result<(), GeometryError> {
        if self.rank() != meta.shape.len() {
            return Err(GeometryError::RankMismatch {
                expected: meta.shape.len(),
                got: self.rank(),
            });
        }
        for (dim, (span, &extent)) in self.0.iter().zip(&meta.shape).enumerate() {
            if span.is_empty() {
                return Err(GeometryError::EmptyRegion {
                    region: self.to_string(),
                    dim,
                });
            }
            if span.hi > extent {
                return Err(GeometryError::OutOfBounds {
                    region: self.to_string(),
                    dim,
                    extent,
                });
            }
        }
        Ok(())
    }

    /// True when every bound is a multiple of the chunk size or the array's
    /// edge, so the region covers whole chunks only.
    pub fn is_chunk_aligned(&self, meta: &ArrayMeta) -> bool {
        self.0
            .iter()
            .zip(meta.chunk_shape.iter().zip(&meta.shape))
            .all(|(s, (&c, &extent))| s.lo % c == 0 && (s.hi % c == 0 || s.hi == extent))
    }

    /// The range of chunk coordinates touched along each dimension.
    pub fn chunk_ranges(&self, meta: &ArrayMeta) -> Vec<Span> {
        self.0
            .iter()
            .zip(&meta.chunk_shape)
            .map(|(s, &c)| Span {
                lo: s.lo / c,
                hi: s.hi.div_ceil(c),
            })
            .collect()
    }

    /// Coordinates of every chunk the region touches, in row-major order.
    pub fn chunks(&self, meta: &ArrayMeta) -> Vec<Vec<u64>> {
        boxes(&self.chunk_ranges(meta))
    }

    /// Linear (row-major) indices of every chunk the region touches.
    pub fn chunk_indices(&self, meta: &ArrayMeta) -> Vec<u64> {
        let grid = meta.grid();
        self.chunks(meta)
            .iter()
            .map(|c| linear_index(c, &grid))
            .collect()
    }

    /// For every chunk touched, the part of it the region covers.
    pub fn chunk_parts(&self, meta: &ArrayMeta) -> Vec<ChunkPart> {
        self.chunks(meta)
            .into_iter()
            .map(|coord| {
                let chunk = chunk_region(&coord, meta);
                let inter = self.intersect(&chunk).unwrap_or_else(|| chunk.clone());
                ChunkPart {
                    in_chunk: inter.relative_to(&chunk),
                    in_region: inter.relative_to(self),
                    coord,
                }
            })
            .collect()
    }

    /// The overlap of two regions of equal rank, if any.
    pub fn intersect(&self, other: &Region) -> Option<Region> {
        if self.rank() != other.rank() {
            return None;
        }
        let spans: Vec<Span> = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| Span {
                lo: a.lo.max(b.lo),
                hi: a.hi.min(b.hi),
            })
            .collect();
        spans.iter().all(|s| !s.is_empty()).then_some(Region(spans))
    }

    /// True when `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Region) -> bool {
        self.rank() == other.rank()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.lo <= b.lo && b.hi <= a.hi)
    }

    /// This region shifted so that `origin`'s low corner is zero.
    /// `self` must lie inside `origin`.
    pub fn relative_to(&self, origin: &Region) -> Region {
        Region(
            self.0
                .iter()
                .zip(&origin.0)
                .map(|(s, o)| Span {
                    lo: s.lo - o.lo,
                    hi: s.hi - o.lo,
                })
                .collect(),
        )
    }
}

/// The region of the array covered by the chunk at `coord`, clipped to the
/// array's shape (edge chunks may be partial).
pub fn chunk_region(coord: &[u64], meta: &ArrayMeta) -> Region {
    Region(
        coord
            .iter()
            .zip(meta.chunk_shape.iter().zip(&meta.shape))
            .map(|(&i, (&c, &extent))| Span {
                lo: i * c,
                hi: ((i + 1) * c).min(extent),
            })
            .collect(),
    )
}

/// Row-major linear index of `coord` in a grid of shape `grid`.
pub fn linear_index(coord: &[u64], grid: &[u64]) -> u64 {
    coord
        .iter()
        .zip(grid)
        .fold(0u64, |acc, (&i, &g)| acc * g + i)
}

/// Inverse of [`linear_index`].
pub fn coord_of(mut index: u64, grid: &[u64]) -> Vec<u64> {
    let mut coord = vec![0; grid.len()];
    for (slot, &g) in coord.iter_mut().zip(grid).rev() {
        let g = g.max(1);
        *slot = index % g;
        index /= g;
    }
    coord
}

/// Every integer point of the box `ranges`, row-major.
fn boxes(ranges: &[Span]) -> Vec<Vec<u64>> {
    if ranges.iter().any(Span::is_empty) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur: Vec<u64> = ranges.iter().map(|s| s.lo).collect();
    loop {
        out.push(cur.clone());
        let mut dim = ranges.len();
        loop {
            if dim == 0 {
                return out;
            }
            dim -= 1;
            cur[dim] += 1;
            if cur[dim] < ranges[dim].hi {
                break;
            }
            cur[dim] = ranges[dim].lo;
        }
    }
}

/// Copies the box `extent` (a shape) of elements of `elem` bytes from a
/// row-major buffer of shape `src_shape` at `src_origin` into one of shape
/// `dst_shape` at `dst_origin`. Callers guarantee the boxes lie inside.
#[allow(clippy::too_many_arguments)]
pub fn copy_box(
    src: &[u8],
    src_shape: &[u64],
    src_origin: &[u64],
    dst: &mut [u8],
    dst_shape: &[u64],
    dst_origin: &[u64],
    extent: &[u64],
    elem: usize,
) {
    let rank = extent.len();
    if rank == 0 || extent.contains(&0) {
        return;
    }
    // Copy contiguous rows along the last dimension.
    let row = extent[rank - 1] as usize * elem;
    let outer: Vec<Span> = extent[..rank - 1]
        .iter()
        .map(|&e| Span { lo: 0, hi: e })
        .collect();
    let rows = if rank == 1 {
        vec![Vec::new()]
    } else {
        boxes(&outer)
    };
    for prefix in rows {
        let offset = |shape: &[u64], origin: &[u64]| {
            let mut point: Vec<u64> = prefix.iter().zip(origin).map(|(p, o)| p + o).collect();
            point.push(origin[rank - 1]);
            linear_index(&point, shape) as usize * elem
        };
        let s = offset(src_shape, src_origin);
        let d = offset(dst_shape, dst_origin);
        dst[d..d + row].copy_from_slice(&src[s..s + row]);
    }
}

impl FromStr for Region {
    type Err = GeometryError;

    /// Parses `lo:hi[,lo:hi…]`; whitespace around numbers is ignored.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| GeometryError::Parse {
            text: text.chars().take(200).collect(),
            why: why.to_string(),
        };
        if text.trim().is_empty() {
            return Err(bad("empty region"));
        }
        let spans = text
            .split(',')
            .map(|part| {
                let (lo, hi) = part
                    .split_once(':')
                    .ok_or_else(|| bad("expected lo:hi in every dimension"))?;
                let num = |s: &str| {
                    s.trim()
                        .parse::<u64>()
                        .map_err(|_| bad("bounds must be non-negative integers"))
                };
                Ok(Span {
                    lo: num(lo)?,
                    hi: num(hi)?,
                })
            })
            .collect::<Result<Vec<_>, GeometryError>>()?;
        if spans.len() > crate::array::MAX_RANK {
            return Err(bad("too many dimensions"));
        }
        Ok(Region(spans))
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", s.lo, s.hi)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::DType;
    use proptest::prelude::*;

    fn meta(shape: &[u64], chunks: &[u64]) -> ArrayMeta {
        ArrayMeta::new(shape.to_vec(), chunks.to_vec(), DType::I32, 0.0).unwrap()
    }

    #[test]
    fn parses_and_prints_the_seed_notation() {
        for text in ["0:20", "15:30", "0:100,20:40"] {
            let r: Region = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
        }
        assert_eq!(
            " 0 : 100 , 20:40".parse::<Region>().unwrap(),
            Region::new(&[(0, 100), (20, 40)])
        );
        for bad in ["", "5", "a:b", "1:2,", "-1:4", "1:2:3"] {
            assert!(
                matches!(bad.parse::<Region>(), Err(GeometryError::Parse { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation_names_the_problem() {
        let m = meta(&[30], &[10]);
        assert!("0:30".parse::<Region>().unwrap().validate(&m).is_ok());
        assert!(matches!(
            "0:31".parse::<Region>().unwrap().validate(&m),
            Err(GeometryError::OutOfBounds {
                dim: 0,
                extent: 30,
                ..
            })
        ));
        assert!(matches!(
            "5:5".parse::<Region>().unwrap().validate(&m),
            Err(GeometryError::EmptyRegion { dim: 0, .. })
        ));
        assert!(matches!(
            "0:5,0:5".parse::<Region>().unwrap().validate(&m),
            Err(GeometryError::RankMismatch {
                expected: 1,
                got: 2
            })
        ));
    }

    #[test]
    fn seed_regions_map_to_chunks() {
        let m = meta(&[30], &[10]);
        let a: Region = "0:20".parse().unwrap();
        let b: Region = "15:30".parse().unwrap();
        let c: Region = "20:30".parse().unwrap();
        assert_eq!(a.chunks(&m), vec![vec![0], vec![1]]);
        assert_eq!(b.chunks(&m), vec![vec![1], vec![2]]);
        assert!(a.is_chunk_aligned(&m));
        assert!(!b.is_chunk_aligned(&m));
        assert!(c.is_chunk_aligned(&m));
        let parts = b.chunk_parts(&m);
        assert_eq!(parts[0].coord, vec![1]);
        assert_eq!(parts[0].in_chunk, Region::new(&[(5, 10)]));
        assert_eq!(parts[0].in_region, Region::new(&[(0, 5)]));
        assert_eq!(parts[1].in_chunk, Region::new(&[(0, 10)]));
        assert_eq!(parts[1].in_region, Region::new(&[(5, 15)]));
    }

    #[test]
    fn edge_chunks_count_as_aligned() {
        let m = meta(&[25, 7], &[10, 5]);
        assert!("20:25,5:7".parse::<Region>().unwrap().is_chunk_aligned(&m));
        assert_eq!(chunk_region(&[2, 1], &m), Region::new(&[(20, 25), (5, 7)]));
    }

    #[test]
    fn copy_box_moves_a_sub_block() {
        // 3x4 source of u8 0..12; copy its 2x2 block at (1,1) into a 2x3 at (0,1).
        let src: Vec<u8> = (0..12).collect();
        let mut dst = vec![0u8; 6];
        copy_box(
            &src,
            &[3, 4],
            &[1, 1],
            &mut dst,
            &[2, 3],
            &[0, 1],
            &[2, 2],
            1,
        );
        assert_eq!(dst, vec![0, 5, 6, 0, 9, 10]);
    }

    proptest! {
        #[test]
        fn linear_index_round_trips(grid in proptest::collection::vec(1u64..6, 1..4), seed in 0u64..10_000) {
            let total: u64 = grid.iter().product();
            let idx = seed % total;
            prop_assert_eq!(linear_index(&coord_of(idx, &grid), &grid), idx);
        }

        #[test]
        fn chunk_parts_tile_the_region(lo in 0u64..40, len in 1u64..40, chunk in 1u64..12) {
            let m = meta(&[100], &[chunk]);
            let r = Region::new(&[(lo, (lo + len).min(100))]);
            let parts = r.chunk_parts(&m);
            let covered: u64 = parts.iter().map(|p| p.in_chunk.elements()).sum();
            prop_assert_eq!(covered, r.elements());
            prop_assert_eq!(parts.len(), r.chunks(&m).len());
        }
    }
}
