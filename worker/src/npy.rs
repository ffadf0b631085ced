//! NumPy `.npy` files: header parsing and encoding (pure) and region reads.
//!
//! Supported: format versions 1.0, 2.0 and 3.0; C order; little-endian
//! (`<`) or byte-order-free (`|`) descrs of bool (`b1`), `i1`..`i8`,
//! `u1`..`u8`, `f4` and `f8`; rank 1 to 32.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use floe_protocol::{ArrayMeta, ArrayPath, DType, FloeError, GeometryError, Region};

use crate::data::{elements, ArrayData};

/// The magic string opening every `.npy` file.
pub const NPY_MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Longest header accepted (numpy itself caps headers well below this).
pub const MAX_NPY_HEADER: usize = 1 << 20;

/// What an `.npy` header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: DType,
    /// Shape (C order).
    pub shape: Vec<u64>,
    /// Offset of the first data byte in the file.
    pub data_offset: u64,
}

fn bad(why: impl Into<String>) -> FloeError {
    FloeError::Codec(format!("not a supported .npy file: {}", why.into()))
}

fn descr_dtype(descr: &str) -> Result<DType, FloeError> {
    let (order, kind) = descr.split_at(descr.len().min(1));
    if !matches!(order, "<" | "|") {
        return Err(bad(format!(
            "descr {descr:?}: only little-endian ('<') or '|' data is supported"
        )));
    }
    Ok(match kind {
        "b1" => DType::Bool,
        "i1" => DType::I8,
        "i2" => DType::I16,
        "i4" => DType::I32,
        "i8" => DType::I64,
        "u1" => DType::U8,
        "u2" => DType::U16,
        "u4" => DType::U32,
        "u8" => DType::U64,
        "f4" => DType::F32,
        "f8" => DType::F64,
        _ => return Err(bad(format!("unsupported descr {descr:?}"))),
    })
}

fn dtype_descr(dtype: DType) -> &'static str {
    match dtype {
        DType::Bool => "|b1",
        DType::I8 => "|i1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::U8 => "|u1",
        DType::U16 => "<u2",
        DType::U32 => "<u4",
        DType::U64 => "<u8",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    }
}

/// A value of the header dict (the subset of Python literals numpy writes).
#[derive(Debug, PartialEq)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

/// A tiny parser for the header's Python dict literal.
struct Lexer<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), FloeError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(bad(format!(
                "header: expected {:?} at byte {}",
                c as char, self.pos
            )))
        }
    }

    fn string(&mut self) -> Result<String, FloeError> {
        let quote = self.peek().filter(|&q| q == b'\'' || q == b'"');
        let quote =
            quote.ok_or_else(|| bad(format!("header: expected a string at byte {}", self.pos)))?;
        self.pos += 1;
        let start = self.pos;
        while self.pos < self.text.len() && self.text[self.pos] != quote {
            self.pos += 1;
        }
        if self.pos >= self.text.len() {
            return Err(bad("header: unterminated string"));
        }
        let s = std::str::from_utf8(&self.text[start..self.pos])
            .map_err(|_| bad("header: string is not UTF-8"))?
            .to_string();
        self.pos += 1;
        Ok(s)
    }

    fn word(&mut self) -> &[u8] {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_alphanumeric() {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn value(&mut self) -> Result<Value, FloeError> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Value::Str(self.string()?)),
            Some(b'(') => {
                self.pos += 1;
                let mut dims = Vec::new();
                loop {
                    if self.peek() == Some(b')') {
                        self.pos += 1;
                        return Ok(Value::Tuple(dims));
                    }
                    let word = self.word();
                    let text = std::str::from_utf8(word).unwrap_or("");
                    // numpy on some platforms writes `3L`.
                    let text = text.strip_suffix('L').unwrap_or(text);
                    let n = text
                        .parse::<u64>()
                        .map_err(|_| bad(format!("header: bad dimension {text:?} in shape")))?;
                    dims.push(n);
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {}
                        _ => return Err(bad("header: malformed shape tuple")),
                    }
                }
            }
            _ => match self.word() {
                b"True" => Ok(Value::Bool(true)),
                b"False" => Ok(Value::Bool(false)),
                _ => Err(bad(format!(
                    "header: unexpected value at byte {}",
                    self.pos
                ))),
            },
        }
    }
}

fn parse_dict(text: &[u8]) -> Result<Vec<(String, Value)>, FloeError> {
    let mut lx = Lexer { text, pos: 0 };
    lx.expect(b'{')?;
    let mut out = Vec::new();
    loop {
        if lx.peek() == Some(b'}') {
            lx.pos += 1;
            break;
        }
        let key = lx.string()?;
        lx.expect(b':')?;
        let value = lx.value()?;
        out.push((key, value));
        match lx.peek() {
            Some(b',') => lx.pos += 1,
            Some(b'}') => {}
            _ => return Err(bad("header: malformed dict")),
        }
    }
    if lx.peek().is_some() {
        return Err(bad("header: trailing bytes after the dict"));
    }
    Ok(out)
}

/// Parses the header at the start of an `.npy` file. `bytes` must hold at
/// least the whole header (the data may follow or not).
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, FloeError> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header"));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => return Err(bad(format!("unsupported format version {v}.{}", bytes[7]))),
    };
    if len > MAX_NPY_HEADER {
        return Err(bad(format!("header of {len} bytes is too long")));
    }
    let end = start + len;
    let text = bytes
        .get(start..end)
        .ok_or_else(|| bad("truncated header"))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    for (key, value) in parse_dict(text)? {
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(descr_dtype(&s)?),
            ("fortran_order", Value::Bool(b)) => fortran = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            (k, v) => return Err(bad(format!("header: unexpected entry {k:?}: {v:?}"))),
        }
    }
    let dtype = descr.ok_or_else(|| bad("header has no 'descr'"))?;
    let shape = shape.ok_or_else(|| bad("header has no 'shape'"))?;
    match fortran {
        Some(false) => {}
        Some(true) => return Err(bad("Fortran-order data is not supported, only C order")),
        None => return Err(bad("header has no 'fortran_order'")),
    }
    if shape.is_empty() || shape.len() > floe_protocol::array::MAX_RANK {
        return Err(bad(format!("rank {} is not supported", shape.len())));
    }
    Ok(NpyHeader {
        dtype,
        shape,
        data_offset: end as u64,
    })
}

/// The header of an `.npy` (version 1.0, or 2.0 when too long) for data of
/// `dtype` and `shape`, padded so the data starts 64-byte aligned.
pub fn encode_header(dtype: DType, shape: &[u64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {tuple}, }}",
        dtype_descr(dtype)
    );
    let v1 = 10 + dict.len() < u16::MAX as usize;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    while prefix + dict.len() + 1 < total {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = NPY_MAGIC.to_vec();
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes `data` as an `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, data: &ArrayData) -> Result<(), FloeError> {
    let path = path.as_ref();
    data.check()
        .map_err(|e| FloeError::Codec(format!("cannot write {}: {e}", path.display())))?;
    let io = |e: std::io::Error| FloeError::Store(format!("cannot write {}: {e}", path.display()));
    let mut file = File::create(path).map_err(io)?;
    file.write_all(&encode_header(data.dtype, &data.shape))
        .map_err(io)?;
    file.write_all(&data.bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

/// An `.npy` file opened for region reads (the data is not loaded).
#[derive(Clone, Debug)]
pub struct NpyFile {
    path: PathBuf,
    header: NpyHeader,
}

impl NpyFile {
    /// Opens and checks an `.npy` file: header, and that the file holds all
    /// the data the header promises.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FloeError> {
        let path = path.as_ref().to_path_buf();
        let io =
            |e: std::io::Error| FloeError::Store(format!("cannot read {}: {e}", path.display()));
        let named = |e: FloeError| match e {
            FloeError::Codec(m) => FloeError::Codec(format!("{}: {m}", path.display())),
            other => other,
        };
        let mut file = File::open(&path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut head = vec![0u8; 12];
        let n = read_up_to(&mut file, &mut head).map_err(io)?;
        head.truncate(n);
        let header_len = match head.get(6) {
            Some(1) if n >= 10 => 10 + u16::from_le_bytes([head[8], head[9]]) as usize,
            Some(2 | 3) if n >= 12 => {
                12 + u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize
            }
            _ => {
                return Err(named(
                    parse_header(&head)
                        .err()
                        .unwrap_or_else(|| bad("truncated header")),
                ))
            }
        };
        if header_len > MAX_NPY_HEADER + 12 {
            return Err(named(bad(format!(
                "header of {header_len} bytes is too long"
            ))));
        }
        let mut bytes = vec![0u8; header_len];
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let n = read_up_to(&mut file, &mut bytes).map_err(io)?;
        bytes.truncate(n);
        let header = parse_header(&bytes).map_err(named)?;
        let data_len = elements(&header.shape)
            .and_then(|n| n.checked_mul(header.dtype.size() as u64))
            .ok_or_else(|| named(bad("shape too large")))?;
        if file_len < header.data_offset.saturating_add(data_len) {
            return Err(named(bad(format!(
                "the header promises {data_len} data bytes but the file holds {}",
                file_len.saturating_sub(header.data_offset)
            ))));
        }
        Ok(NpyFile { path, header })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.header.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[u64] {
        &self.header.shape
    }

    /// The parsed header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// Reads `region` of the file's data; the region must lie inside its
    /// shape.
    pub fn read_region(&self, region: &Region) -> Result<ArrayData, FloeError> {
        let label = self.path.display().to_string();
        let rows = row_ranges(&self.header, region, &label)?;
        let io = |e: std::io::Error| FloeError::Store(format!("cannot read {label}: {e}"));
        let mut file = File::open(&self.path).map_err(io)?;
        let mut bytes = Vec::with_capacity(rows.iter().map(|r| (r.end - r.start) as usize).sum());
        for row in rows {
            let start = bytes.len();
            bytes.resize(start + (row.end - row.start) as usize, 0);
            file.seek(SeekFrom::Start(row.start)).map_err(io)?;
            file.read_exact(&mut bytes[start..]).map_err(io)?;
        }
        ArrayData::from_bytes(self.header.dtype, &region.shape(), bytes)
    }

    /// Checks that this file can feed array `path` with metadata `meta`.
    pub fn check_fits(&self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError> {
        check_fits(&self.header, &self.path.display().to_string(), path, meta)
    }
}

/// The byte ranges (from the start of the file), row by row in C order,
/// that hold `region` of an `.npy` with `header`; `label` names the file
/// in errors. The region must lie inside the shape.
pub fn row_ranges(
    header: &NpyHeader,
    region: &Region,
    label: &str,
) -> Result<Vec<std::ops::Range<u64>>, FloeError> {
    let shape = &header.shape;
    if region.rank() != shape.len()
        || region
            .0
            .iter()
            .zip(shape)
            .any(|(s, &n)| s.is_empty() || s.hi > n)
    {
        return Err(FloeError::Codec(format!(
            "{label}: region {region} does not fit the file's shape {shape:?}"
        )));
    }
    let size = header.dtype.size() as u64;
    let rank = shape.len();
    let row = region.0[rank - 1].len() * size;
    let mut prefix: Vec<u64> = region.0[..rank - 1].iter().map(|s| s.lo).collect();
    let mut out = Vec::new();
    loop {
        let mut point = prefix.clone();
        point.push(region.0[rank - 1].lo);
        let start = header.data_offset + floe_protocol::region::linear_index(&point, shape) * size;
        out.push(start..start + row);
        // Next row, odometer-style over the outer dimensions.
        let mut dim = rank - 1;
        loop {
            if dim == 0 {
                return Ok(out);
            }
            dim -= 1;
            prefix[dim] += 1;
            if prefix[dim] < region.0[dim].hi {
                break;
            }
            prefix[dim] = region.0[dim].lo;
        }
    }
}

/// Checks that an `.npy` with `header` (named `label`) can feed array
/// `path` with metadata `meta`: same dtype, same shape.
pub fn check_fits(
    header: &NpyHeader,
    label: &str,
    path: &ArrayPath,
    meta: &ArrayMeta,
) -> Result<(), FloeError> {
    if header.dtype != meta.dtype {
        return Err(FloeError::DTypeMismatch {
            path: path.clone(),
            expected: meta.dtype,
            got: header.dtype,
        });
    }
    if header.shape.len() != meta.shape.len() {
        return Err(FloeError::geometry(
            path,
            GeometryError::RankMismatch {
                expected: meta.shape.len(),
                got: header.shape.len(),
            },
        ));
    }
    if header.shape != meta.shape {
        return Err(FloeError::InvalidPlan {
            why: format!(
                "{label} has shape {:?} but array {path} has shape {:?}",
                header.shape, meta.shape
            ),
        });
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_numpy_writes() {
        // Bytes as written by numpy 1.26: np.save(f, np.zeros((3, 4), '<f8')).
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }";
        let mut text = dict.to_string();
        let target = (10 + text.len() + 1).div_ceil(64) * 64;
        while 10 + text.len() + 1 < target {
            text.push(' ');
        }
        text.push('\n');
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        let h = parse_header(&bytes).unwrap();
        assert_eq!(h.dtype, DType::F64);
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(h.data_offset, 128);
        // One-dimensional tuples, `|` descrs and double quotes.
        let h = parse_header(&encode_header(DType::Bool, &[5])).unwrap();
        assert_eq!((h.dtype, h.shape), (DType::Bool, vec![5]));
    }

    #[test]
    fn headers_round_trip_for_every_dtype() {
        for dtype in DType::ALL {
            let bytes = encode_header(dtype, &[2, 3, 4]);
            assert_eq!(bytes.len() % 64, 0);
            let h = parse_header(&bytes).unwrap();
            assert_eq!(h.dtype, dtype);
            assert_eq!(h.shape, vec![2, 3, 4]);
            assert_eq!(h.data_offset, bytes.len() as u64);
        }
    }

    #[test]
    fn version_two_and_three_headers_parse() {
        for major in [2u8, 3] {
            let text = "{'descr': '<i4', 'fortran_order': False, 'shape': (7,), }\n";
            let mut bytes = NPY_MAGIC.to_vec();
            bytes.extend_from_slice(&[major, 0]);
            bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            let h = parse_header(&bytes).unwrap();
            assert_eq!((h.dtype, h.shape), (DType::I32, vec![7]));
        }
    }

    fn with_dict(dict: &str) -> Vec<u8> {
        let mut bytes = NPY_MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        bytes
    }

    #[test]
    fn bad_headers_are_clear_errors() {
        let cases = [
            (b"NOTNPY\x01\x00\x00\x00".to_vec(), "magic"),
            (
                with_dict("{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }"),
                "little-endian",
            ),
            (
                with_dict("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }"),
                "unsupported descr",
            ),
            (
                with_dict("{'descr': '<f8', 'fortran_order': True, 'shape': (3,), }"),
                "Fortran",
            ),
            (
                with_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (), }"),
                "rank 0",
            ),
            (
                with_dict("{'descr': '<f8', 'shape': (3,), }"),
                "fortran_order",
            ),
            (
                with_dict("{'descr': '<f8', 'fortran_order': False"),
                "malformed",
            ),
            (
                with_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (3, -1), }"),
                "dimension",
            ),
            (
                with_dict("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }"),
                "unexpected value",
            ),
        ];
        for (bytes, needle) in cases {
            let err = parse_header(&bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
        let mut future = encode_header(DType::U8, &[3]);
        future[6] = 9;
        assert!(parse_header(&future)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        let whole = encode_header(DType::U8, &[3]);
        assert!(parse_header(&whole[..30]).is_err());
    }

    #[test]
    fn files_round_trip_and_regions_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.npy");
        let values: Vec<i16> = (0..60).collect();
        let data = ArrayData::from_slice(&[3, 4, 5], &values).unwrap();
        write_npy(&file, &data).unwrap();
        let npy = NpyFile::open(&file).unwrap();
        assert_eq!(npy.dtype(), DType::I16);
        assert_eq!(npy.shape(), &[3, 4, 5]);
        assert_eq!(
            npy.read_region(&"0:3,0:4,0:5".parse().unwrap()).unwrap(),
            data
        );
        let part = npy.read_region(&"1:3,2:3,1:4".parse().unwrap()).unwrap();
        assert_eq!(part.shape, vec![2, 1, 3]);
        assert_eq!(part.to_vec::<i16>().unwrap(), vec![31, 32, 33, 51, 52, 53]);
        assert!(npy.read_region(&"0:4,0:4,0:5".parse().unwrap()).is_err());
    }

    #[test]
    fn truncated_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.npy");
        let data = ArrayData::from_slice(&[100], &[1.0f32; 100]).unwrap();
        write_npy(&file, &data).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 4]).unwrap();
        let err = NpyFile::open(&file).unwrap_err().to_string();
        assert!(err.contains("promises"), "{err}");
        std::fs::write(&file, &bytes[..5]).unwrap();
        assert!(NpyFile::open(&file).is_err());
        std::fs::write(&file, b"").unwrap();
        assert!(NpyFile::open(&file).is_err());
        assert!(matches!(
            NpyFile::open(dir.path().join("missing.npy")),
            Err(FloeError::Store(_))
        ));
    }

    #[test]
    fn a_file_must_fit_its_array() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.npy");
        write_npy(&file, &ArrayData::from_slice(&[2, 3], &[0u8; 6]).unwrap()).unwrap();
        let npy = NpyFile::open(&file).unwrap();
        let path = ArrayPath::new("/a").unwrap();
        let ok = ArrayMeta::new(vec![2, 3], vec![1, 3], DType::U8, 0.0).unwrap();
        assert!(npy.check_fits(&path, &ok).is_ok());
        let wrong_type = ArrayMeta::new(vec![2, 3], vec![1, 3], DType::I8, 0.0).unwrap();
        assert!(matches!(
            npy.check_fits(&path, &wrong_type),
            Err(FloeError::DTypeMismatch { .. })
        ));
        let wrong_shape = ArrayMeta::new(vec![3, 2], vec![1, 2], DType::U8, 0.0).unwrap();
        assert!(npy.check_fits(&path, &wrong_shape).is_err());
        let wrong_rank = ArrayMeta::new(vec![6], vec![3], DType::U8, 0.0).unwrap();
        assert!(matches!(
            npy.check_fits(&path, &wrong_rank),
            Err(FloeError::Geometry { .. })
        ));
    }
}
