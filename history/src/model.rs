//! The array model: what a commit's `changes` do to a session's arrays,
//! element by element, and how chunks of one array are copied into
//! another. Arrays are dense `f64`s in row-major order (exact for the
//! integers the harness writes); they are small, so the data checker can
//! keep one per commit.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::values::{naturals, number};

/// More elements than this in one array is taken as a malformed shape
/// rather than allocated: the harness's arrays have at most thousands.
const MAX_ELEMENTS: u64 = 1 << 24;

/// One change a session made, in the order it made them.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `{"array", "create": {"shape", "chunks", "fill"}}`: a new array of
    /// `shape`, cut into chunks of `chunks` elements per dimension, every
    /// element `fill`.
    Create {
        /// Its path.
        array: String,
        /// Its shape.
        shape: Vec<u64>,
        /// Its chunk shape.
        chunks: Vec<u64>,
        /// The value of elements never written.
        fill: f64,
    },
    /// `{"array", "write": [[start, end], ...], "value"}`: every element of
    /// the region (one half-open range per dimension) set to `value`.
    Write {
        /// Its path.
        array: String,
        /// `[start, end)` per dimension.
        region: Vec<(u64, u64)>,
        /// The value written.
        value: f64,
    },
    /// `{"array", "resize": [shape]}`: elements beyond the new shape cut,
    /// new ones `fill`.
    Resize {
        /// Its path.
        array: String,
        /// The new shape.
        shape: Vec<u64>,
    },
}

impl Change {
    /// Reads one entry of a commit's `changes`.
    pub fn parse(v: &Value) -> Result<Change, String> {
        let array = v
            .get("array")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("change {v} names no array"))?
            .to_string();
        if let Some(create) = v.get("create") {
            let field = |key: &str| create.get(key).unwrap_or(&Value::Null);
            return Ok(Change::Create {
                array,
                shape: naturals(field("shape"), "a shape")?,
                chunks: naturals(field("chunks"), "a chunk shape")?,
                fill: number(field("fill"), "fill")?,
            });
        }
        if let Some(region) = v.get("write") {
            return Ok(Change::Write {
                array,
                region: ranges(region)?,
                value: number(v.get("value").unwrap_or(&Value::Null), "value")?,
            });
        }
        if let Some(shape) = v.get("resize") {
            return Ok(Change::Resize {
                array,
                shape: naturals(shape, "a shape")?,
            });
        }
        Err(format!("change {v} is none of create, write, resize"))
    }

    /// The array it changes.
    pub fn array(&self) -> &str {
        match self {
            Change::Create { array, .. }
            | Change::Write { array, .. }
            | Change::Resize { array, .. } => array,
        }
    }

    /// Whether it changes the array's metadata (creates or resizes it).
    pub fn changes_metadata(&self) -> bool {
        !matches!(self, Change::Write { .. })
    }
}

/// `[[16, 40], ...]`: one half-open range per dimension.
fn ranges(v: &Value) -> Result<Vec<(u64, u64)>, String> {
    let dims = v
        .as_array()
        .ok_or_else(|| format!("region {v} is not a list"))?;
    dims.iter()
        .map(|d| match naturals(d, "a region range")?.as_slice() {
            [start, end] if start <= end => Ok((*start, *end)),
            _ => Err(format!("region range {d} is not [start, end]")),
        })
        .collect()
}

/// An array's contents as the model knows them.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Its shape.
    pub shape: Vec<u64>,
    /// Its chunk shape.
    pub chunk_shape: Vec<u64>,
    /// The value of elements never written.
    pub fill: f64,
    /// Every element, row-major.
    pub data: Vec<f64>,
    /// Chunk coordinates -> the commit that last copied it in, for reports.
    pub writers: BTreeMap<Vec<u64>, String>,
}

impl Array {
    /// A new array, every element `fill`.
    pub fn new(shape: Vec<u64>, chunk_shape: Vec<u64>, fill: f64) -> Result<Array, String> {
        if chunk_shape.len() != shape.len() || chunk_shape.contains(&0) {
            return Err(format!(
                "chunk shape {chunk_shape:?} does not fit shape {shape:?}"
            ));
        }
        let n = elements(&shape)?;
        Ok(Array {
            data: vec![fill; n],
            shape,
            chunk_shape,
            fill,
            writers: BTreeMap::new(),
        })
    }

    /// Applies one change of a session (`create` replaces the array).
    pub fn apply(&mut self, change: &Change) -> Result<(), String> {
        match change {
            Change::Create {
                shape,
                chunks,
                fill,
                ..
            } => {
                *self = Array::new(shape.clone(), chunks.clone(), *fill)?;
            }
            Change::Write { region, value, .. } => self.write(region, *value)?,
            Change::Resize { shape, .. } => *self = self.resized(shape)?,
        }
        Ok(())
    }

    /// Sets every element of `region` (clipped to the shape) to `value`.
    fn write(&mut self, region: &[(u64, u64)], value: f64) -> Result<(), String> {
        if region.len() != self.shape.len() {
            return Err(format!(
                "region {region:?} does not fit shape {:?}",
                self.shape
            ));
        }
        let lo: Vec<u64> = region.iter().map(|r| r.0).collect();
        let hi: Vec<u64> = region
            .iter()
            .zip(&self.shape)
            .map(|(r, s)| r.1.min(*s))
            .collect();
        let shape = self.shape.clone();
        for_each_in_box(&lo, &hi, |at| self.data[flat(at, &shape)] = value);
        Ok(())
    }

    /// The array at another shape: elements inside both shapes kept,
    /// elements beyond the new shape cut, new ones `fill`.
    pub fn resized(&self, shape: &[u64]) -> Result<Array, String> {
        let mut out = Array::new(shape.to_vec(), self.chunk_shape.clone(), self.fill)?;
        let hi: Vec<u64> = shape
            .iter()
            .zip(&self.shape)
            .map(|(a, b)| *a.min(b))
            .collect();
        let zero = vec![0; shape.len()];
        for_each_in_box(&zero, &hi, |at| {
            out.data[flat(at, &out.shape)] = self.data[flat(at, &self.shape)];
        });
        // A chunk wholly cut off has no last writer any more.
        out.writers = self.writers.clone();
        let chunk_shape = &self.chunk_shape;
        out.writers.retain(|c, _| {
            c.iter()
                .zip(chunk_shape)
                .zip(shape)
                .all(|((c, k), s)| c * k < *s)
        });
        Ok(out)
    }

    /// Copies chunk `coord` from `from` (elements inside both shapes) and
    /// records `writer` as its last writer.
    pub fn copy_chunk(&mut self, from: &Array, coord: &[u64], writer: &str) {
        if coord.len() != self.shape.len() || from.shape.len() != self.shape.len() {
            return;
        }
        let lo: Vec<u64> = coord
            .iter()
            .zip(&self.chunk_shape)
            .map(|(c, k)| c * k)
            .collect();
        let hi: Vec<u64> = (0..coord.len())
            .map(|d| {
                (lo[d] + self.chunk_shape[d])
                    .min(self.shape[d])
                    .min(from.shape[d])
            })
            .collect();
        for_each_in_box(&lo, &hi, |at| {
            self.data[flat(at, &self.shape)] = from.data[flat(at, &from.shape)];
        });
        self.writers.insert(coord.to_vec(), writer.to_string());
    }

    /// The coordinates of the element at row-major index `i`.
    pub fn index_of(&self, mut i: usize) -> Vec<u64> {
        let mut out = vec![0; self.shape.len()];
        for (slot, &s) in out.iter_mut().zip(&self.shape).rev() {
            let s = s.max(1) as usize;
            *slot = (i % s) as u64;
            i /= s;
        }
        out
    }

    /// The chunk holding the element at `index`.
    pub fn chunk_of(&self, index: &[u64]) -> Vec<u64> {
        index
            .iter()
            .zip(&self.chunk_shape)
            .map(|(i, k)| i / k)
            .collect()
    }
}

/// How many elements a shape has, refusing absurd ones.
fn elements(shape: &[u64]) -> Result<usize, String> {
    let n = shape
        .iter()
        .try_fold(1u64, |n, s| n.checked_mul(*s))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| format!("shape {shape:?} has too many elements to model"))?;
    Ok(n as usize)
}

/// The row-major index of `at` in `shape` (`at` inside it).
fn flat(at: &[u64], shape: &[u64]) -> usize {
    at.iter().zip(shape).fold(0u64, |i, (a, s)| i * s + a) as usize
}

/// Calls `visit` on every index in `[lo, hi)`, row-major; nothing when the
/// box is empty in any dimension.
fn for_each_in_box(lo: &[u64], hi: &[u64], mut visit: impl FnMut(&[u64])) {
    if lo.iter().zip(hi).any(|(l, h)| l >= h) {
        return;
    }
    let mut at = lo.to_vec();
    loop {
        visit(&at);
        // Odometer: bump the last dimension, carrying leftwards.
        let mut d = at.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            at[d] += 1;
            if at[d] < hi[d] {
                break;
            }
            at[d] = lo[d];
        }
    }
}
