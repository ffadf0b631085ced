//! Reading the pieces of JSON values the vocabulary shares (chunk
//! coordinates, shapes, numbers), reporting what is malformed instead of
//! panicking: a history is evidence, and a bad line must not stop a check.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Chunk coordinates by array path.
pub type Chunks = BTreeMap<String, BTreeSet<Vec<u64>>>;

/// A list of non-negative integers (a shape, a chunk coordinate).
pub(crate) fn naturals(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("{what} is not a list: {v}"))?;
    items
        .iter()
        .map(|n| {
            n.as_u64()
                .ok_or_else(|| format!("{what} has {n}, not a non-negative integer"))
        })
        .collect()
}

/// A list of chunk coordinates: `[[3], [4]]`.
pub(crate) fn coord_set(v: &Value) -> Result<BTreeSet<Vec<u64>>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("chunks {v} is not a list"))?;
    items
        .iter()
        .map(|c| naturals(c, "a chunk coordinate"))
        .collect()
}

/// Chunks by array: `{"/a": [[3], [4]]}`.
pub(crate) fn chunk_map(v: &Value) -> Result<Chunks, String> {
    let arrays = v
        .as_object()
        .ok_or_else(|| format!("chunks {v} is not an object"))?;
    arrays
        .iter()
        .map(|(path, coords)| Ok((path.clone(), coord_set(coords)?)))
        .collect()
}

/// A number, read as `f64`: exact for integers up to 2^53, which is all
/// the harness writes.
pub(crate) fn number(v: &Value, what: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("{what} {v} is not a number"))
}

/// An optional field: absent or `null` is `None`, anything else is read.
pub(crate) fn optional<T>(
    v: &Value,
    key: &str,
    read: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => read(x).map(Some),
    }
}

/// An optional string field; present but not a string is malformed.
pub(crate) fn optional_str(v: &Value, key: &str) -> Result<Option<String>, String> {
    optional(v, key, |x| {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{key} {x} is not a string"))
    })
}
