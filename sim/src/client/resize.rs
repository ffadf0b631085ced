//! Resizes for the built-in writer: a script may, instead of (or besides)
//! writing chunks, replace one array's shape (`MetaChange::Update` with the
//! same dtype, chunk shape, fill value and codec), so that metadata
//! conflicts (resize vs resize, chunks written to a resized array) race
//! with the writers.

use std::collections::BTreeMap;

use floe_protocol::{ArrayMeta, ArrayPath, Footprint, MetaChange};

/// Whether a resize may shrink a dimension to a length that is not a
/// multiple of its chunk size. Off: with it on, the data oracle finds that
/// a later grow resurrects the elements the shrink cut off (the partial
/// edge chunk keeps its coordinate, and `worker::resolve` hands back the
/// whole old chunk), e.g. seed 189: `/a0` of shape [69], chunk [39], resized
/// to [18] then [33] reads the old elements 18..33 instead of the fill
/// value. Turn it on once reads mask what a shrink cut off.
pub const UNALIGNED_SHRINKS: bool = false;

/// A resize of `path` to `shape` (unless [`UNALIGNED_SHRINKS`], a shrink
/// rounds down to a multiple of the chunk size, and one below a chunk
/// leaves the dimension as it is).
#[derive(Clone, Debug)]
pub struct Resize {
    /// The array.
    pub path: ArrayPath,
    /// Its new shape.
    pub shape: Vec<u64>,
}

impl Resize {
    /// The array's metadata after the resize, from its metadata at the
    /// checkout; `None` when it does not exist there or the shape is bad.
    pub fn meta(&self, arrays: &BTreeMap<ArrayPath, ArrayMeta>) -> Option<ArrayMeta> {
        let old = arrays.get(&self.path)?;
        let mut new = old.clone();
        new.shape = self.shape.clone();
        if !UNALIGNED_SHRINKS {
            for ((n, o), c) in new.shape.iter_mut().zip(&old.shape).zip(&old.chunk_shape) {
                if *n < *o && *n % c != 0 {
                    // Under one chunk: leave the dimension as it is.
                    *n = match *n / c * c {
                        0 => *o,
                        aligned => aligned,
                    };
                }
            }
        }
        new.validate().ok()?;
        Some(new)
    }

    /// Records the resize in `footprint`; false when it cannot be made.
    pub fn record(
        &self,
        arrays: &BTreeMap<ArrayPath, ArrayMeta>,
        footprint: &mut Footprint,
    ) -> bool {
        let Some(new) = self.meta(arrays) else {
            return false;
        };
        footprint.set_meta(&self.path, &new, MetaChange::Update(new.clone()));
        true
    }
}
