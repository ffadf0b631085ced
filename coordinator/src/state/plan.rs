//! Validation of cooperative plans: every task inside an existing array,
//! chunk-aligned, and no two tasks sharing a chunk.

use roaring::RoaringTreemap;
use std::collections::BTreeMap;
use std::ops::Range;

use floe_protocol::region::{coord_of, linear_index};
use floe_protocol::{ArrayMeta, ArrayPath, FloeError, PlannedTask, Region, Span};

/// Most tasks one plan may hold.
pub const MAX_TASKS: usize = 1_000_000;
/// Most rows of chunks (runs along the last dimension) one plan may cover,
/// so validating a plan takes bounded time.
pub const MAX_PLAN_ROWS: u64 = 1 << 24;
/// Longest lease a session may ask for, in milliseconds (one hour).
pub const MAX_LEASE_MS: u64 = 3_600_000;

fn invalid(why: String) -> FloeError {
    FloeError::InvalidPlan { why }
}

/// Checks a plan against the arrays of the session's base.
pub(super) fn validate_plan(
    tasks: &[PlannedTask],
    arrays: &BTreeMap<ArrayPath, ArrayMeta>,
) -> Result<(), FloeError> {
    if tasks.is_empty() {
        return Err(invalid(
            "the plan has no tasks (open a planless session instead)".into(),
        ));
    }
    if tasks.len() > MAX_TASKS {
        return Err(invalid(format!(
            "the plan has {} tasks; at most {MAX_TASKS} are allowed",
            tasks.len()
        )));
    }
    let mut rows_left = MAX_PLAN_ROWS;
    let mut taken: BTreeMap<&ArrayPath, RoaringTreemap> = BTreeMap::new();
    for (i, task) in tasks.iter().enumerate() {
        let meta = check_task(i, task, arrays)?;
        let cells = task_chunks(i, meta, &task.region, &mut rows_left)?;
        let used = taken.entry(&task.array).or_default();
        if let Some(first) = (&*used & &cells).min() {
            return Err(overlap(tasks, i, meta, first));
        }
        *used |= cells;
    }
    Ok(())
}

/// One task on its own: its array exists and its region is valid and aligned.
fn check_task<'a>(
    i: usize,
    task: &PlannedTask,
    arrays: &'a BTreeMap<ArrayPath, ArrayMeta>,
) -> Result<&'a ArrayMeta, FloeError> {
    let path = &task.array;
    let meta = arrays.get(path).ok_or_else(|| {
        invalid(format!(
            "task T{i}: array {path} does not exist at the base"
        ))
    })?;
    task.region
        .validate(meta)
        .map_err(|e| invalid(format!("task T{i}: array {path}: {e}")))?;
    if !task.region.is_chunk_aligned(meta) {
        return Err(invalid(format!(
            "task T{i}: region {} of {path} is not chunk-aligned (chunk shape {:?})",
            task.region, meta.chunk_shape
        )));
    }
    Ok(meta)
}

/// The linear chunk indices of a task's region, built row by row.
fn task_chunks(
    i: usize,
    meta: &ArrayMeta,
    region: &Region,
    rows_left: &mut u64,
) -> Result<RoaringTreemap, FloeError> {
    let ranges = region.chunk_ranges(meta);
    let rows = ranges[..ranges.len().saturating_sub(1)]
        .iter()
        .try_fold(1u64, |acc, s| acc.checked_mul(s.len()))
        .filter(|&rows| rows <= *rows_left)
        .ok_or_else(|| {
            invalid(format!(
                "task T{i}: the plan covers more than {MAX_PLAN_ROWS} rows of chunks"
            ))
        })?;
    *rows_left -= rows;
    let mut cells = RoaringTreemap::new();
    for_each_row(&ranges, &meta.grid(), |row| {
        cells.insert_range(row);
    });
    Ok(cells)
}

/// Calls `f` with the linear index range of every row (run along the last
/// dimension) of the chunk box `ranges`.
fn for_each_row(ranges: &[Span], grid: &[u64], mut f: impl FnMut(Range<u64>)) {
    let Some((last, outer)) = ranges.split_last() else {
        return;
    };
    if ranges.iter().any(Span::is_empty) {
        return;
    }
    let mut prefix: Vec<u64> = outer.iter().map(|s| s.lo).collect();
    loop {
        let mut coord = prefix.clone();
        coord.push(last.lo);
        let start = linear_index(&coord, grid);
        f(start..start + last.len());
        let mut dim = outer.len();
        loop {
            if dim == 0 {
                return;
            }
            dim -= 1;
            prefix[dim] += 1;
            if prefix[dim] < outer[dim].hi {
                break;
            }
            prefix[dim] = outer[dim].lo;
        }
    }
}

/// The error for task `i` sharing chunk `index` with an earlier task.
fn overlap(tasks: &[PlannedTask], i: usize, meta: &ArrayMeta, index: u64) -> FloeError {
    let path = &tasks[i].array;
    let coord = coord_of(index, &meta.grid());
    let inside = |t: &PlannedTask| {
        t.region
            .chunk_ranges(meta)
            .iter()
            .zip(&coord)
            .all(|(s, c)| s.lo <= *c && *c < s.hi)
    };
    let earlier = tasks[..i]
        .iter()
        .position(|t| &t.array == path && inside(t))
        .map_or_else(|| "an earlier task".to_string(), |j| format!("T{j}"));
    invalid(format!(
        "tasks {earlier} and T{i} overlap on {path} chunk {coord:?}"
    ))
}
