//! Property test of the commit rule against a brute-force reference: random
//! histories of writers on one or two small arrays (1-D and 2-D), each
//! writing from a base already on the branch, committed with
//! `Rebase{Fail}`. A commit lands iff it shares no chunk with any commit
//! between its base and the tip, and a refusal names exactly the shared
//! chunks. `CanFastForward` must give the same answer.

mod state_support;

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

use floe_coordinator::state::Config;
use floe_protocol::footprint::MAX_LISTED_CHUNKS;
use floe_protocol::{
    ArrayMeta, ArrayPath, CommitId, CommitMode, Conflict, ConflictKind, FloeError, Footprint,
    MetaChange, Region, Reply,
};
use state_support::*;

/// Chunk coordinates per array.
type Chunks = BTreeMap<ArrayPath, BTreeSet<Vec<u64>>>;

#[derive(Clone, Debug)]
struct ArraySpec {
    shape: Vec<u64>,
    chunk: Vec<u64>,
}

/// One region write, as raw numbers mapped onto the array at use.
#[derive(Clone, Debug)]
struct Write {
    array: usize,
    /// 0: any region, 1: snapped outward to chunk boundaries, 2: the whole array.
    mode: u8,
    bounds: Vec<(u64, u64)>,
}

#[derive(Clone, Debug)]
struct Writer {
    base: u64,
    writes: Vec<Write>,
}

fn array_spec() -> impl Strategy<Value = ArraySpec> {
    prop_oneof![
        (1u64..=12, 1u64..=4).prop_map(|(s, c)| ArraySpec {
            shape: vec![s],
            chunk: vec![c],
        }),
        (1u64..=12, 1u64..=12, 1u64..=3, 1u64..=3).prop_map(|(a, b, c, d)| ArraySpec {
            shape: vec![a, b],
            chunk: vec![c, d],
        }),
    ]
}

fn writer() -> impl Strategy<Value = Writer> {
    let write = (
        any::<usize>(),
        0u8..3,
        prop::collection::vec((any::<u64>(), any::<u64>()), 2),
    )
        .prop_map(|(array, mode, bounds)| Write {
            array,
            mode,
            bounds,
        });
    (any::<u64>(), prop::collection::vec(write, 1..=3))
        .prop_map(|(base, writes)| Writer { base, writes })
}

/// The region a raw write stands for.
fn region_of(w: &Write, m: &ArrayMeta) -> Region {
    let spans: Vec<(u64, u64)> = m
        .shape
        .iter()
        .zip(&m.chunk_shape)
        .zip(&w.bounds)
        .map(|((&s, &c), &(a, b))| {
            let lo = a % s;
            let hi = lo + 1 + b % (s - lo);
            match w.mode {
                0 => (lo, hi),
                1 => (lo / c * c, (hi.div_ceil(c) * c).min(s)),
                _ => (0, s),
            }
        })
        .collect();
    Region::new(&spans)
}

/// Brute force: the chunk of every element of the region.
fn chunks_of(region: &Region, m: &ArrayMeta) -> BTreeSet<Vec<u64>> {
    let mut out = BTreeSet::new();
    let mut point: Vec<u64> = region.0.iter().map(|s| s.lo).collect();
    loop {
        out.insert(
            point
                .iter()
                .zip(&m.chunk_shape)
                .map(|(p, c)| p / c)
                .collect(),
        );
        let mut dim = point.len();
        loop {
            if dim == 0 {
                return out;
            }
            dim -= 1;
            point[dim] += 1;
            if point[dim] < region.0[dim].hi {
                break;
            }
            point[dim] = region.0[dim].lo;
        }
    }
}

/// The conflicts the reference expects: per array, the chunks shared with
/// any commit in `since`, in row-major order.
fn expected_conflicts(ours: &Chunks, since: &[Chunks]) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (path, mine) in ours {
        let shared: BTreeSet<Vec<u64>> = since
            .iter()
            .filter_map(|theirs| theirs.get(path))
            .flat_map(|theirs| mine.intersection(theirs).cloned())
            .collect();
        if shared.is_empty() {
            continue;
        }
        out.push(Conflict {
            path: path.clone(),
            kind: ConflictKind::ChunkDoubleUpdate {
                chunks: shared.iter().take(MAX_LISTED_CHUNKS).cloned().collect(),
                total: shared.len() as u64,
            },
        });
    }
    out
}

fn run_history(specs: &[ArraySpec], writers: &[Writer]) -> Result<(), TestCaseError> {
    run_history_with(Config::default(), specs, writers)
}

fn run_history_with(
    config: Config,
    specs: &[ArraySpec],
    writers: &[Writer],
) -> Result<(), TestCaseError> {
    let mut h = Harness::with_config(config);
    h.create_repo();
    let arrays: Vec<(ArrayPath, ArrayMeta)> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (path(&format!("/a{i}")), meta(&s.shape, &s.chunk)))
        .collect();
    let mut create = Footprint::new();
    for (p, m) in &arrays {
        create.set_meta(p, m, MetaChange::Create(m.clone()));
    }
    let c1 = committed(h.commit(CommitId(0), create, CommitMode::Strict));
    // The reference's branch: (commit, chunks it wrote), from C1 on.
    let mut chain: Vec<(CommitId, Chunks)> = vec![(c1, Chunks::new())];
    for w in writers {
        let base_at = (w.base % chain.len() as u64) as usize;
        let base = chain[base_at].0;
        let tip = chain[chain.len() - 1].0;
        let mut footprint = Footprint::new();
        let mut ours = Chunks::new();
        for write in &w.writes {
            let (p, m) = &arrays[write.array % arrays.len()];
            let region = region_of(write, m);
            footprint.add_region(p, m, &region);
            ours.entry(p.clone())
                .or_default()
                .extend(chunks_of(&region, m));
        }
        let since: Vec<Chunks> = chain[base_at + 1..]
            .iter()
            .map(|(_, c)| c.clone())
            .collect();
        let expected = expected_conflicts(&ours, &since);

        let asked = h.can_fast_forward(base, &footprint);
        prop_assert_eq!(
            asked,
            Ok(Reply::FastForward {
                tip,
                conflicts: expected.clone()
            }),
            "CanFastForward from {} with {:?}",
            base,
            ours
        );
        let outcome = h.commit(base, footprint.clone(), REBASE);
        if expected.is_empty() {
            let landed = CommitId(tip.0 + 1);
            prop_assert_eq!(
                outcome,
                Ok(Reply::Committed {
                    commit: landed,
                    parent: tip,
                    rebased_over: since.len() as u32
                }),
                "false conflict from {} with {:?}",
                base,
                ours
            );
            prop_assert_eq!(h.record(landed).footprint, footprint);
            chain.push((landed, ours));
        } else {
            prop_assert_eq!(
                outcome,
                Err(FloeError::Conflict {
                    tip,
                    conflicts: expected
                }),
                "missed or misreported conflict from {} with {:?}",
                base,
                ours
            );
        }
        prop_assert_eq!(h.tip(), chain[chain.len() - 1].0);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn commits_land_iff_no_chunk_is_shared_with_commits_since_base(
        specs in prop::collection::vec(array_spec(), 1..=2),
        writers in prop::collection::vec(writer(), 1..=12),
    ) {
        run_history(&specs, &writers)?;
    }
}

/// The reference itself must be able to see both outcomes, and truncation.
#[test]
fn reference_sanity() {
    let m = meta(&[30], &[10]);
    assert_eq!(
        chunks_of(&region("15:30"), &m),
        BTreeSet::from([vec![1], vec![2]])
    );
    let big = meta(&[12, 12], &[1, 1]);
    let all = chunks_of(&region("0:12,0:12"), &big);
    let ours = Chunks::from([(path("/a0"), all.clone())]);
    let c = expected_conflicts(&ours, std::slice::from_ref(&ours));
    assert!(matches!(
        &c[0].kind,
        ConflictKind::ChunkDoubleUpdate { chunks, total: 144 } if chunks.len() == 64
    ));
}

/// The property has teeth: each planted bug in the commit rule is caught.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_commit_rule_bugs_are_caught() {
    use floe_coordinator::bugs::Bugs;
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};
    let bugs = [
        Bugs {
            skip_conflict_check: true,
            ..Bugs::default()
        },
        Bugs {
            check_only_tip: true,
            ..Bugs::default()
        },
    ];
    for bug in bugs {
        let mut runner = TestRunner::new(RunnerConfig {
            cases: 400,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let strategy = (
            prop::collection::vec(array_spec(), 1..=2),
            prop::collection::vec(writer(), 1..=12),
        );
        let config = Config {
            bugs: bug,
            ..Config::default()
        };
        let result = runner.run(&strategy, |(specs, writers)| {
            run_history_with(config.clone(), &specs, &writers)
        });
        assert!(result.is_err(), "{bug:?} was not caught");
    }
}
