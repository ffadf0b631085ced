//! Array metadata: shape, chunk grid, element type, fill value, codec.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::GeometryError;

/// Most dimensions an array may have.
pub const MAX_RANK: usize = 32;

/// The element type of an array. Elements are stored little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// One byte, 0 or 1.
    Bool,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 1,
            DType::I16 | DType::U16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// The numpy-style name (`bool`, `int8`, …, `float64`).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::U8 => "uint8",
            DType::U16 => "uint16",
            DType::U32 => "uint32",
            DType::U64 => "uint64",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Every dtype, in declaration order.
    pub const ALL: [DType; 11] = [
        DType::Bool,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::F32,
        DType::F64,
    ];

    /// Encodes `value` as one little-endian element of this dtype; `None`
    /// when the value does not fit (e.g. 300 as `uint8`, 1.5 as `int32`).
    pub fn encode(self, value: f64) -> Option<Vec<u8>> {
        fn int<T: TryFrom<i128>>(v: f64) -> Option<T> {
            if v.fract() != 0.0 || !v.is_finite() {
                return None;
            }
            T::try_from(v as i128).ok()
        }
        Some(match self {
            DType::Bool if value == 0.0 || value == 1.0 => vec![value as u8],
            DType::Bool => return None,
            DType::I8 => int::<i8>(value)?.to_le_bytes().to_vec(),
            DType::I16 => int::<i16>(value)?.to_le_bytes().to_vec(),
            DType::I32 => int::<i32>(value)?.to_le_bytes().to_vec(),
            DType::I64 => int::<i64>(value)?.to_le_bytes().to_vec(),
            DType::U8 => int::<u8>(value)?.to_le_bytes().to_vec(),
            DType::U16 => int::<u16>(value)?.to_le_bytes().to_vec(),
            DType::U32 => int::<u32>(value)?.to_le_bytes().to_vec(),
            DType::U64 => int::<u64>(value)?.to_le_bytes().to_vec(),
            DType::F32 => (value as f32).to_le_bytes().to_vec(),
            DType::F64 => value.to_le_bytes().to_vec(),
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How chunk bytes are compressed in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Codec {
    /// Raw little-endian elements.
    #[default]
    Raw,
    /// zstd at the given level.
    Zstd {
        /// Compression level (1–22).
        level: i32,
    },
}

/// Everything that defines an array except its data.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArrayMeta {
    /// Extent of each dimension, in elements.
    pub shape: Vec<u64>,
    /// Extent of one chunk in each dimension; every entry is at least 1.
    pub chunk_shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
    /// One element, little-endian, returned where nothing was written.
    pub fill_value: Vec<u8>,
    /// Compression of chunk objects.
    pub codec: Codec,
}

impl ArrayMeta {
    /// Builds and validates metadata with a numeric fill value.
    pub fn new(
        shape: Vec<u64>,
        chunk_shape: Vec<u64>,
        dtype: DType,
        fill: f64,
    ) -> Result<Self, GeometryError> {
        let fill_value = dtype.encode(fill).ok_or(GeometryError::BadFillValue {
            dtype,
            value: fill.to_string(),
        })?;
        let meta = ArrayMeta {
            shape,
            chunk_shape,
            dtype,
            fill_value,
            codec: Codec::Raw,
        };
        meta.validate()?;
        Ok(meta)
    }

    /// Same metadata with another codec.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Checks rank, chunk shape, fill value and that the chunk count fits in 64 bits.
    pub fn validate(&self) -> Result<(), GeometryError> {
        let rank = self.shape.len();
        if rank == 0 || rank > MAX_RANK {
            return Err(GeometryError::BadRank { rank });
        }
        if self.chunk_shape.len() != rank {
            return Err(GeometryError::RankMismatch {
                expected: rank,
                got: self.chunk_shape.len(),
            });
        }
        if let Some(dim) = self.chunk_shape.iter().position(|&c| c == 0) {
            return Err(GeometryError::ZeroChunk { dim });
        }
        if self.fill_value.len() != self.dtype.size() {
            return Err(GeometryError::BadFillValue {
                dtype: self.dtype,
                value: format!("{} bytes", self.fill_value.len()),
            });
        }
        if let Codec::Zstd { level } = self.codec {
            if !(1..=22).contains(&level) {
                return Err(GeometryError::BadCodec { level });
            }
        }
        self.grid()
            .iter()
            .try_fold(1u64, |acc, &g| acc.checked_mul(g.max(1)))
            .ok_or(GeometryError::TooManyChunks)?;
        self.chunk_shape
            .iter()
            .try_fold(1u64, |acc, &c| acc.checked_mul(c))
            .filter(|&n| n <= MAX_CHUNK_ELEMENTS)
            .ok_or(GeometryError::ChunkTooLarge)?;
        Ok(())
    }

    /// Number of chunks along each dimension (`ceil(shape / chunk_shape)`).
    pub fn grid(&self) -> Vec<u64> {
        self.shape
            .iter()
            .zip(&self.chunk_shape)
            .map(|(&s, &c)| s.div_ceil(c))
            .collect()
    }

    /// Total number of chunks in the grid.
    pub fn chunk_count(&self) -> u64 {
        self.grid().iter().product()
    }

    /// Elements in one full chunk.
    pub fn chunk_elements(&self) -> usize {
        self.chunk_shape.iter().product::<u64>() as usize
    }
}

/// Most elements one chunk may hold (so a chunk fits comfortably in memory).
pub const MAX_CHUNK_ELEMENTS: u64 = 1 << 27;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_values_must_fit_the_dtype() {
        assert!(ArrayMeta::new(vec![10], vec![5], DType::U8, 300.0).is_err());
        assert!(ArrayMeta::new(vec![10], vec![5], DType::I32, 1.5).is_err());
        assert!(ArrayMeta::new(vec![10], vec![5], DType::Bool, 2.0).is_err());
        let m = ArrayMeta::new(vec![10], vec![5], DType::I16, -2.0).unwrap();
        assert_eq!(m.fill_value, (-2i16).to_le_bytes().to_vec());
        let f = ArrayMeta::new(vec![10], vec![5], DType::F64, f64::NAN).unwrap();
        assert_eq!(f.fill_value.len(), 8);
    }

    #[test]
    fn shapes_are_validated() {
        assert!(matches!(
            ArrayMeta::new(vec![], vec![], DType::U8, 0.0),
            Err(GeometryError::BadRank { rank: 0 })
        ));
        assert!(matches!(
            ArrayMeta::new(vec![10, 10], vec![5], DType::U8, 0.0),
            Err(GeometryError::RankMismatch { .. })
        ));
        assert!(matches!(
            ArrayMeta::new(vec![10], vec![0], DType::U8, 0.0),
            Err(GeometryError::ZeroChunk { dim: 0 })
        ));
        assert!(matches!(
            ArrayMeta::new(vec![u64::MAX, u64::MAX], vec![1, 1], DType::U8, 0.0),
            Err(GeometryError::TooManyChunks)
        ));
    }

    #[test]
    fn grid_rounds_up() {
        let m = ArrayMeta::new(vec![100, 35], vec![10, 10], DType::F32, 0.0).unwrap();
        assert_eq!(m.grid(), vec![10, 4]);
        assert_eq!(m.chunk_count(), 40);
        assert_eq!(m.chunk_elements(), 100);
    }
}
