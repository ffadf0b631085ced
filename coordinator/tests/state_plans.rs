//! Property test of plan validation against a brute-force reference: a
//! plan of chunk-aligned tasks on one or two small arrays is accepted iff
//! no two tasks of the same array share a chunk, and a refusal names the
//! first overlapping task and the earlier task it collides with.

mod state_support;

use proptest::prelude::*;
use std::collections::BTreeSet;

use floe_protocol::{ArrayMeta, Footprint, MetaChange, PlannedTask, Region};
use state_support::*;

fn meta_strategy() -> impl Strategy<Value = ArrayMeta> {
    prop_oneof![
        (1u64..=12, 1u64..=4).prop_map(|(s, c)| meta(&[s], &[c])),
        (1u64..=9, 1u64..=9, 1u64..=3, 1u64..=3).prop_map(|(a, b, c, d)| meta(&[a, b], &[c, d])),
    ]
}

/// A chunk-aligned region of `m` from raw numbers.
fn aligned(m: &ArrayMeta, raw: &[(u64, u64)]) -> Region {
    let spans: Vec<(u64, u64)> = m
        .grid()
        .iter()
        .zip(&m.chunk_shape)
        .zip(&m.shape)
        .zip(raw)
        .map(|(((&g, &c), &s), &(a, b))| {
            let lo = a % g;
            let hi = lo + 1 + b % (g - lo);
            (lo * c, (hi * c).min(s))
        })
        .collect();
    Region::new(&spans)
}

/// Brute force: the chunk of every element.
fn chunks_of(region: &Region, m: &ArrayMeta) -> BTreeSet<Vec<u64>> {
    let mut out = BTreeSet::new();
    for i in 0..region.0[0].len() {
        let x = region.0[0].lo + i;
        if region.rank() == 1 {
            out.insert(vec![x / m.chunk_shape[0]]);
            continue;
        }
        for y in region.0[1].lo..region.0[1].hi {
            out.insert(vec![x / m.chunk_shape[0], y / m.chunk_shape[1]]);
        }
    }
    out
}

/// The reference's verdict: `None` if disjoint, else `(earlier, later)`:
/// the first task sharing a chunk with an earlier one, and the first
/// earlier task holding the lowest shared chunk.
fn first_overlap(tasks: &[PlannedTask], metas: &[(String, ArrayMeta)]) -> Option<(usize, usize)> {
    let chunks: Vec<BTreeSet<Vec<u64>>> = tasks
        .iter()
        .map(|t| {
            let m = &metas.iter().find(|(p, _)| path(p) == t.array).unwrap().1;
            chunks_of(&t.region, m)
        })
        .collect();
    let same = |i: usize, j: usize| tasks[i].array == tasks[j].array;
    for i in 0..tasks.len() {
        let lowest = (0..i)
            .filter(|&j| same(i, j))
            .flat_map(|j| chunks[i].intersection(&chunks[j]))
            .min();
        if let Some(c) = lowest {
            let j = (0..i)
                .find(|&j| same(i, j) && chunks[j].contains(c))
                .unwrap();
            return Some((j, i));
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn plans_are_accepted_iff_tasks_are_disjoint(
        metas in prop::collection::vec(meta_strategy(), 1..=2),
        raw in prop::collection::vec(
            (any::<usize>(), prop::collection::vec((any::<u64>(), any::<u64>()), 2)),
            1..=8,
        ),
    ) {
        let mut h = Harness::with_repo();
        let named: Vec<(String, ArrayMeta)> =
            metas.iter().enumerate().map(|(i, m)| (format!("/a{i}"), m.clone())).collect();
        let mut create = Footprint::new();
        for (p, m) in &named {
            create.set_meta(&path(p), m, MetaChange::Create(m.clone()));
        }
        committed(h.commit(floe_protocol::CommitId(0), create, floe_protocol::CommitMode::Strict));
        let tasks: Vec<PlannedTask> = raw
            .iter()
            .map(|(a, bounds)| {
                let (p, m) = &named[a % named.len()];
                PlannedTask { array: path(p), region: aligned(m, bounds) }
            })
            .collect();
        let outcome = h.open_session(Some(tasks.clone()), 1000);
        match first_overlap(&tasks, &named) {
            None => prop_assert!(outcome.is_ok(), "{:?} refused: {:?}", tasks, outcome),
            Some((j, i)) => {
                let why = plan_error(outcome);
                let expected = format!("tasks T{j} and T{i} overlap");
                prop_assert!(why.contains(&expected), "{} not in {}", expected, why);
            }
        }
    }
}
