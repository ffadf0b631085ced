//! In-memory array data: a typed, row-major, little-endian buffer, and
//! the checks of data against the array and region it is written to.

use std::collections::BTreeMap;

use floe_protocol::{ArrayMeta, ArrayPath, DType, FloeError, GeometryError, Region};

/// A Rust type that can be an array element. Implemented for `bool`,
/// `u8`..`u64`, `i8`..`i64`, `f32` and `f64`.
pub trait Element: Copy + Send + Sync + 'static {
    /// The dtype an array of this type has.
    const DTYPE: DType;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly `DTYPE.size()` little-endian bytes.
    fn get_le(bytes: &[u8]) -> Self;
}

macro_rules! numeric_element {
    ($($t:ty => $d:ident),* $(,)?) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn get_le(bytes: &[u8]) -> Self {
                let mut raw = [0u8; std::mem::size_of::<$t>()];
                let n = raw.len().min(bytes.len());
                raw[..n].copy_from_slice(&bytes[..n]);
                <$t>::from_le_bytes(raw)
            }
        }
    )*};
}

numeric_element!(
    u8 => U8, u16 => U16, u32 => U32, u64 => U64,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64,
    f32 => F32, f64 => F64,
);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn put_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn get_le(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|&b| b != 0)
    }
}

/// A block of array data: `shape` elements of `dtype`, row-major,
/// little-endian in `bytes`. Constructors keep `bytes.len()` equal to
/// `elements(shape) * dtype.size()`; code that builds one by hand should
/// call [`ArrayData::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayData {
    /// Element type.
    pub dtype: DType,
    /// Extent along each dimension.
    pub shape: Vec<u64>,
    /// The elements, row-major, little-endian.
    pub bytes: Vec<u8>,
}

/// Number of elements of a block of `shape`, `None` on overflow.
pub fn elements(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &n| acc.checked_mul(n))
}

fn byte_len(dtype: DType, shape: &[u64]) -> Result<usize, FloeError> {
    elements(shape)
        .and_then(|n| n.checked_mul(dtype.size() as u64))
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| FloeError::Codec(format!("a block of shape {shape:?} is too large")))
}

impl ArrayData {
    /// Data from typed values; `values.len()` must equal the product of `shape`.
    pub fn from_slice<T: Element>(shape: &[u64], values: &[T]) -> Result<Self, FloeError> {
        let needed = elements(shape).unwrap_or(u64::MAX);
        if needed != values.len() as u64 {
            return Err(FloeError::Codec(format!(
                "{} values given for a block of shape {shape:?} ({needed} elements)",
                values.len()
            )));
        }
        let mut bytes = Vec::with_capacity(values.len() * T::DTYPE.size());
        for &v in values {
            v.put_le(&mut bytes);
        }
        Ok(ArrayData {
            dtype: T::DTYPE,
            shape: shape.to_vec(),
            bytes,
        })
    }

    /// Data from raw little-endian bytes; the length must match `shape`.
    pub fn from_bytes(dtype: DType, shape: &[u64], bytes: Vec<u8>) -> Result<Self, FloeError> {
        let data = ArrayData {
            dtype,
            shape: shape.to_vec(),
            bytes,
        };
        data.check().map_err(|e| FloeError::Codec(e.to_string()))?;
        Ok(data)
    }

    /// A block of `shape` holding the fill value of `meta` everywhere.
    pub fn filled(meta: &ArrayMeta, shape: &[u64]) -> Result<Self, FloeError> {
        let len = byte_len(meta.dtype, shape)?;
        let size = meta.dtype.size();
        let mut bytes = vec![0u8; len];
        if meta.fill_value.len() == size && meta.fill_value.iter().any(|&b| b != 0) {
            for elem in bytes.chunks_exact_mut(size) {
                elem.copy_from_slice(&meta.fill_value);
            }
        }
        Ok(ArrayData {
            dtype: meta.dtype,
            shape: shape.to_vec(),
            bytes,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        elements(&self.shape).unwrap_or(u64::MAX)
    }

    /// True when the block holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that `bytes` holds exactly `shape` elements of `dtype`.
    pub fn check(&self) -> Result<(), GeometryError> {
        let expected = elements(&self.shape)
            .and_then(|n| n.checked_mul(self.dtype.size() as u64))
            .unwrap_or(u64::MAX);
        if expected != self.bytes.len() as u64 {
            return Err(GeometryError::DataSize {
                expected,
                got: self.bytes.len() as u64,
            });
        }
        Ok(())
    }

    /// The elements as typed values; an error when `T` is not of this
    /// block's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, FloeError> {
        if T::DTYPE != self.dtype {
            return Err(FloeError::Codec(format!(
                "the data holds {}, not {}",
                self.dtype,
                T::DTYPE
            )));
        }
        Ok(self
            .bytes
            .chunks_exact(self.dtype.size())
            .map(T::get_le)
            .collect())
    }

    /// Every element converted to `f64` (bool as 0/1), whatever the dtype.
    /// Handy for printing and for comparisons in tools.
    pub fn to_f64(&self) -> Vec<f64> {
        let size = self.dtype.size();
        self.bytes
            .chunks_exact(size)
            .map(|b| match self.dtype {
                DType::Bool => f64::from(u8::from(bool::get_le(b))),
                DType::I8 => f64::from(i8::get_le(b)),
                DType::I16 => f64::from(i16::get_le(b)),
                DType::I32 => f64::from(i32::get_le(b)),
                DType::I64 => i64::get_le(b) as f64,
                DType::U8 => f64::from(u8::get_le(b)),
                DType::U16 => f64::from(u16::get_le(b)),
                DType::U32 => f64::from(u32::get_le(b)),
                DType::U64 => u64::get_le(b) as f64,
                DType::F32 => f64::from(f32::get_le(b)),
                DType::F64 => f64::get_le(b),
            })
            .collect()
    }
}

/// The metadata of array `path` among `arrays`, else
/// [`FloeError::UnknownArray`].
pub fn meta_of<'a>(
    arrays: &'a BTreeMap<ArrayPath, ArrayMeta>,
    path: &ArrayPath,
) -> Result<&'a ArrayMeta, FloeError> {
    arrays
        .get(path)
        .ok_or_else(|| FloeError::UnknownArray { path: path.clone() })
}

/// Checks `region` against array `path` (described by `meta`): its rank
/// and bounds, as an error naming the array.
pub fn check_region(path: &ArrayPath, meta: &ArrayMeta, region: &Region) -> Result<(), FloeError> {
    region
        .validate(meta)
        .map_err(|e| FloeError::geometry(path, e))
}

/// Checks `data` against array `path` (described by `meta`): of its dtype,
/// with a buffer holding exactly the elements of its shape.
pub fn check_block(path: &ArrayPath, meta: &ArrayMeta, data: &ArrayData) -> Result<(), FloeError> {
    if data.dtype != meta.dtype {
        return Err(FloeError::DTypeMismatch {
            path: path.clone(),
            expected: meta.dtype,
            got: data.dtype,
        });
    }
    data.check().map_err(|e| FloeError::geometry(path, e))
}

/// Checks `data` written to (or read for) `region` of array `path`
/// (described by `meta`): [`check_block`], then that it has the region's
/// shape. The region itself is not checked (see [`check_region`]).
pub fn check_region_data(
    path: &ArrayPath,
    meta: &ArrayMeta,
    region: &Region,
    data: &ArrayData,
) -> Result<(), FloeError> {
    check_block(path, meta, data)?;
    check_data_shape(path, meta, region, data)
}

/// Checks that `data` has the shape of `region`: a rank mismatch, else a
/// size mismatch, naming array `path`.
pub(crate) fn check_data_shape(
    path: &ArrayPath,
    meta: &ArrayMeta,
    region: &Region,
    data: &ArrayData,
) -> Result<(), FloeError> {
    if data.shape.len() != region.rank() {
        return Err(FloeError::geometry(
            path,
            GeometryError::RankMismatch {
                expected: region.rank(),
                got: data.shape.len(),
            },
        ));
    }
    if data.shape != region.shape() {
        return Err(FloeError::geometry(
            path,
            GeometryError::DataSize {
                expected: region.elements() * meta.dtype.size() as u64,
                got: data.bytes.len() as u64,
            },
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_round_trips() {
        let d = ArrayData::from_slice(&[2, 3], &[1i32, -2, 3, -4, 5, -6]).unwrap();
        assert_eq!(d.dtype, DType::I32);
        assert_eq!(d.bytes.len(), 24);
        assert_eq!(&d.bytes[4..8], &(-2i32).to_le_bytes());
        assert_eq!(d.to_vec::<i32>().unwrap(), vec![1, -2, 3, -4, 5, -6]);
        let b = ArrayData::from_slice(&[3], &[true, false, true]).unwrap();
        assert_eq!(b.dtype, DType::Bool);
        assert_eq!(b.bytes, vec![1, 0, 1]);
        assert_eq!(b.to_vec::<bool>().unwrap(), vec![true, false, true]);
        let f = ArrayData::from_slice(&[2], &[1.5f64, f64::MIN]).unwrap();
        assert_eq!(f.to_vec::<f64>().unwrap(), vec![1.5, f64::MIN]);
        assert_eq!(f.to_f64(), vec![1.5, f64::MIN]);
    }

    #[test]
    fn dtype_and_size_are_checked() {
        let d = ArrayData::from_slice(&[2], &[1u16, 2]).unwrap();
        assert!(d.to_vec::<i16>().is_err());
        assert!(d.to_vec::<u8>().is_err());
        assert!(ArrayData::from_slice(&[3], &[1u8, 2]).is_err());
        assert!(ArrayData::from_bytes(DType::F32, &[2], vec![0; 7]).is_err());
        assert!(ArrayData::from_bytes(DType::F32, &[2], vec![0; 8]).is_ok());
        let mut bad = d.clone();
        bad.bytes.pop();
        assert_eq!(
            bad.check(),
            Err(GeometryError::DataSize {
                expected: 4,
                got: 3
            })
        );
    }

    #[test]
    fn filled_repeats_the_fill_value() {
        let m = ArrayMeta::new(vec![10], vec![5], DType::I16, -3.0).unwrap();
        let d = ArrayData::filled(&m, &[2, 2]).unwrap();
        assert_eq!(d.to_vec::<i16>().unwrap(), vec![-3; 4]);
        let z = ArrayMeta::new(vec![10], vec![5], DType::F64, 0.0).unwrap();
        assert_eq!(
            ArrayData::filled(&z, &[3])
                .unwrap()
                .to_vec::<f64>()
                .unwrap(),
            vec![0.0; 3]
        );
    }

    #[test]
    fn region_data_is_checked_for_dtype_buffer_then_shape() {
        let path = ArrayPath::new("/t").unwrap();
        let meta = ArrayMeta::new(vec![10], vec![5], DType::I16, 0.0).unwrap();
        let region = Region::new(&[(0, 3)]);
        let good = ArrayData::from_slice(&[3], &[1i16, 2, 3]).unwrap();
        assert!(check_region(&path, &meta, &region).is_ok());
        assert!(check_region(&path, &meta, &Region::new(&[(0, 11)])).is_err());
        assert!(check_region_data(&path, &meta, &region, &good).is_ok());
        let wrong = ArrayData::from_slice(&[3], &[1i32, 2, 3]).unwrap();
        assert!(matches!(
            check_region_data(&path, &meta, &region, &wrong),
            Err(FloeError::DTypeMismatch { .. })
        ));
        // The size mismatch reported, as (expected, got) bytes.
        let size_error = |data: &ArrayData| match check_region_data(&path, &meta, &region, data) {
            Err(FloeError::Geometry {
                error: GeometryError::DataSize { expected, got },
                ..
            }) => Some((expected, got)),
            _ => None,
        };
        let mut short = good.clone();
        short.bytes.pop();
        assert_eq!(size_error(&short), Some((6, 5)));
        let other = ArrayData::from_slice(&[2], &[1i16, 2]).unwrap();
        assert_eq!(size_error(&other), Some((6, 4)));
        let flat_2d = ArrayData::from_slice(&[1, 3], &[1i16, 2, 3]).unwrap();
        assert!(matches!(
            check_region_data(&path, &meta, &region, &flat_2d),
            Err(FloeError::Geometry {
                error: GeometryError::RankMismatch {
                    expected: 1,
                    got: 2
                },
                ..
            })
        ));
    }
}
