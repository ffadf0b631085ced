//! Random workloads: arrays (1-D and 2-D, small, various chunk shapes,
//! dtypes, fill values and codecs), regions (aligned or not, overlapping
//! or not) with deterministic data, commit modes, and the per-seed shape
//! (how much contention, how many crashes...) tuned when a bug is planted.

use floe_protocol::{
    ArrayMeta, ArrayPath, Codec, CommitMode, DType, PlannedTask, Region, RepoName, Solver, Span,
};
use rand::rngs::SmallRng;
use rand::Rng;

use crate::bug::Bug;

/// Knobs drawn per seed.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Length of the safety phase (faults on), ms.
    pub safety_ms: u64,
    /// Non-cooperative writers.
    pub writers: usize,
    /// Regions confined to the first few chunks (more overlap).
    pub hot: bool,
    /// Node snapshot period in applied entries (0: never).
    pub snapshot_every: u64,
    /// Node digest period (1: every index).
    pub digest_every: u64,
    /// Scale on the drawn crash and partition rates (more faults < 1).
    pub fault_scale: f64,
    /// Cooperative jobs.
    pub jobs: usize,
    /// Lease length of cooperative tasks is drawn in this range, ms.
    pub lease_ms: (u64, u64),
    /// Overrides the plan's mean time between worker faults, ms.
    pub worker_fault_ms: Option<u64>,
    /// Share of writers that are the built-in aligned writer.
    pub simple_share: f64,
    /// Forces network faults on, with this mean period, ms.
    pub partition_ms: Option<u64>,
    /// Forces coordinator crashes on, with this mean period, ms.
    pub crash_ms: Option<u64>,
    /// Forces duplication and long delays on (stale messages arrive late).
    pub stale_messages: bool,
    /// Slow object store (workers hold their tasks for a while).
    pub slow_store: bool,
    /// Writers start in waves (bursts of contention) rather than spread.
    pub waves: bool,
    /// Share of network faults that isolate the leader from its peers.
    pub isolate_leader: f64,
    /// Checkpointers (each writes one checkpoint of the tip).
    pub checkpointers: usize,
    /// Planless cooperative sessions (each with 2-4 contributors).
    pub planless: usize,
    /// Resizers on every seed without cooperative runs: more of them, each
    /// resizing two or three times, half of them with the solver `theirs`.
    pub busy_resizes: bool,
    /// A branch `dev` is created from a commit of `main` and written to.
    pub branching: bool,
    /// Taggers (each tags a branch tip; a reader reads at the tag later).
    pub taggers: usize,
    /// Share of coordinator restarts that come back with a wiped disk
    /// (when that is safe: see `Cluster::wipe`).
    pub wipe_share: f64,
    /// Idle client sessions expire after this (short on some seeds, so
    /// that clients cut off for long see `SessionExpired`).
    pub client_expiry_ms: u64,
}

impl Shape {
    /// Applies the shape's forced faults to a drawn plan.
    pub fn adjust(&self, plan: &mut crate::faults::FaultPlan, rng: &mut SmallRng) {
        if let Some(ms) = self.worker_fault_ms {
            plan.worker_crash_every_ms = ms;
        }
        if let Some(ms) = self.partition_ms {
            plan.partition_every_ms = ms;
        }
        if let Some(ms) = self.crash_ms {
            plan.crash_every_ms = ms;
        }
        if self.slow_store {
            plan.max_store_latency_ms = rng.gen_range(100..300);
        }
        if self.stale_messages {
            plan.duplicate = plan.duplicate.max(rng.gen_range(0.05..0.2));
            plan.max_extra_delay_ms = plan.max_extra_delay_ms.max(rng.gen_range(100..400));
            plan.delay_share = rng.gen_range(0.2..0.5);
        }
    }

    /// Draws the branch and tag knobs (from their own stream, so that the
    /// other draws stay as they were).
    pub fn draw_branches(&mut self, rng: &mut SmallRng, bug: Option<Bug>) {
        self.branching = rng.gen_bool(0.4);
        self.taggers = if rng.gen_bool(0.4) {
            rng.gen_range(1..=2)
        } else {
            0
        };
        if bug == Some(Bug::TagFollowsBranch) {
            self.branching = true;
            self.taggers = rng.gen_range(2..=4);
        }
    }

    /// Draws a shape, leaning towards what exposes `bug` when one is planted.
    pub fn draw(rng: &mut SmallRng, bug: Option<Bug>) -> Shape {
        let mut s = Shape {
            safety_ms: rng.gen_range(5_000..10_000),
            writers: rng.gen_range(6..24),
            hot: rng.gen_bool(0.4),
            snapshot_every: *pick(rng, &[0, 5, 16, 64, 1000]),
            digest_every: 1,
            fault_scale: 1.0,
            jobs: rng.gen_range(0..=3),
            lease_ms: (200, 1_500),
            worker_fault_ms: None,
            simple_share: 0.25,
            partition_ms: None,
            crash_ms: None,
            stale_messages: false,
            slow_store: false,
            waves: true,
            isolate_leader: 0.25,
            checkpointers: rng.gen_range(0..=2),
            planless: if rng.gen_bool(0.3) {
                rng.gen_range(1..=2)
            } else {
                0
            },
            busy_resizes: false,
            branching: false,
            taggers: 0,
            wipe_share: 0.15,
            // Short expiries on a quarter of the seeds: clients cut off by
            // partitions and crashes outlive their sessions, and a retry
            // must get `SessionExpired`, never a second application.
            client_expiry_ms: if rng.gen_bool(0.25) {
                rng.gen_range(1_500..6_000)
            } else {
                floe_coordinator::state::DEFAULT_CLIENT_EXPIRY_MS
            },
        };
        match bug {
            Some(Bug::SkipConflictCheck | Bug::CheckOnlyTip) => {
                s.writers = rng.gen_range(12..24);
                s.hot = true;
            }
            Some(Bug::ForgetIdempotencyOnRestore) => {
                s.snapshot_every = rng.gen_range(2..6);
                s.crash_ms = Some(rng.gen_range(300..1_000));
            }
            Some(Bug::SnapshotOutOfOrder) => {
                s.snapshot_every = rng.gen_range(2..6);
                s.partition_ms = Some(rng.gen_range(200..600));
                s.stale_messages = true;
                s.writers = rng.gen_range(12..24);
            }
            Some(Bug::ReplyBeforeCommit) => {
                // Steady command traffic, so that a leader cut off from its
                // quorum takes some before it steps down.
                s.writers = rng.gen_range(24..40);
                s.jobs = rng.gen_range(1..=2);
                s.waves = false;
                s.partition_ms = Some(rng.gen_range(150..400));
                s.crash_ms = Some(rng.gen_range(300..1_000));
                s.isolate_leader = 0.7;
            }
            Some(Bug::StaleReads) => {
                // Busy writers; partitions leave followers behind.
                s.writers = rng.gen_range(16..32);
                s.partition_ms = Some(rng.gen_range(150..400));
                s.isolate_leader = 0.7;
            }
            Some(Bug::ForgetEdgeRewrite | Bug::ForgetRegrow | Bug::TheirsDropsResizeChunks) => {
                // Resizers race the writers only on seeds without
                // cooperative runs; hot chunks make them collide.
                s.jobs = 0;
                s.planless = 0;
                s.hot = true;
                s.busy_resizes = true;
            }
            Some(Bug::AcceptStaleEpoch) => {
                s.jobs = rng.gen_range(2..=3);
                s.lease_ms = (100, 300);
                s.worker_fault_ms = Some(rng.gen_range(100..300));
                s.slow_store = true;
            }
            Some(Bug::IgnoreLostLog) => {
                s.crash_ms = Some(rng.gen_range(300..1_000));
                s.wipe_share = 0.8;
            }
            Some(Bug::TagFollowsBranch | Bug::IndexLostOnRestore) | None => {}
        }
        s
    }
}

fn pick<'a, T>(rng: &mut SmallRng, xs: &'a [T]) -> &'a T {
    &xs[rng.gen_range(0..xs.len())]
}

/// Draws 1 to 3 arrays named `/a0`, `/a1`, ...
pub fn arrays(rng: &mut SmallRng) -> Vec<(ArrayPath, ArrayMeta)> {
    let n = rng.gen_range(1..=3);
    (0..n)
        .map(|i| {
            let path = ArrayPath::new(format!("/a{i}")).expect("valid path");
            (path, array(rng))
        })
        .collect()
}

/// Draws one array's metadata.
pub fn array(rng: &mut SmallRng) -> ArrayMeta {
    let (shape, chunks) = if rng.gen_bool(0.6) {
        let len: u64 = rng.gen_range(4..=200);
        let chunk = rng.gen_range(1..=len.min(40));
        // Keep the grid small so reads and checks stay cheap.
        (vec![len], vec![chunk.max(len.div_ceil(48))])
    } else {
        let (a, b) = (rng.gen_range(2..=16), rng.gen_range(2..=16));
        (vec![a, b], vec![rng.gen_range(1..=a), rng.gen_range(1..=b)])
    };
    let dtype = *pick(rng, &DType::ALL);
    let fill = fill_value(rng, dtype);
    let meta = ArrayMeta::new(shape, chunks, dtype, fill).expect("valid metadata");
    if rng.gen_bool(0.2) {
        meta.with_codec(Codec::Zstd { level: 1 })
    } else {
        meta
    }
}

fn fill_value(rng: &mut SmallRng, dtype: DType) -> f64 {
    let v = *pick(rng, &[0.0, 1.0, 7.0, -3.0, 0.5]);
    if dtype.encode(v).is_some() {
        v
    } else {
        0.0
    }
}

/// A region of `meta`: chunk-aligned when `aligned`, confined to the
/// first two chunks per dimension when `hot`.
pub fn region(rng: &mut SmallRng, meta: &ArrayMeta, aligned: bool, hot: bool) -> Region {
    let grid = meta.grid();
    let spans = meta
        .shape
        .iter()
        .zip(&meta.chunk_shape)
        .zip(&grid)
        .map(|((&len, &chunk), &g)| {
            let top = if hot { g.min(2) } else { g };
            if aligned {
                let lo = rng.gen_range(0..top);
                let hi = rng.gen_range(lo + 1..=top);
                Span {
                    lo: lo * chunk,
                    hi: (hi * chunk).min(len),
                }
            } else {
                let end = (top * chunk).min(len);
                let lo = rng.gen_range(0..end);
                Span {
                    lo,
                    hi: rng.gen_range(lo + 1..=end),
                }
            }
        })
        .collect();
    Region(spans)
}

/// A new shape for `meta`: each dimension from 1 to twice its length,
/// often not a multiple of the chunk size (a partial edge chunk).
pub fn resized_shape(rng: &mut SmallRng, meta: &ArrayMeta) -> Vec<u64> {
    meta.shape
        .iter()
        .map(|&len| rng.gen_range(1..=len * 2))
        .collect()
}

/// Deterministic, writer-specific bytes for `region` of `meta`.
pub fn data(meta: &ArrayMeta, region: &Region, salt: u64) -> Vec<u8> {
    let n = region.elements();
    let mut out = Vec::with_capacity(n as usize * meta.dtype.size());
    for i in 0..n {
        let v = (salt.wrapping_mul(31).wrapping_add(i * 7)) % 100;
        let v = if meta.dtype == DType::Bool { v % 2 } else { v };
        out.extend(
            meta.dtype
                .encode(v as f64)
                .expect("0..100 fits every dtype"),
        );
    }
    out
}

/// A commit mode: mostly the seed's Strict loop or Rebase with the fail
/// solver, sometimes `ours` / `theirs`. Returns (mode, seed_loop).
pub fn mode(rng: &mut SmallRng) -> (CommitMode, bool) {
    match rng.gen_range(0..40) {
        0..=13 => (CommitMode::Strict, true),
        14..=15 => (CommitMode::Strict, false),
        16..=33 => (
            CommitMode::Rebase {
                solver: Solver::Fail,
            },
            false,
        ),
        34..=36 => (
            CommitMode::Rebase {
                solver: Solver::Ours,
            },
            false,
        ),
        _ => (
            CommitMode::Rebase {
                solver: Solver::Theirs,
            },
            false,
        ),
    }
}

/// The repo every seed writes to.
pub fn repo() -> RepoName {
    RepoName::new("sim").expect("valid name")
}

/// A cooperative plan over one array: its chunk grid cut into blocks of
/// one to three chunks per dimension (chunk-aligned, disjoint, covering).
pub fn plan(rng: &mut SmallRng, path: &ArrayPath, meta: &ArrayMeta) -> Vec<PlannedTask> {
    let grid = meta.grid();
    let cuts: Vec<Vec<Span>> = grid
        .iter()
        .zip(meta.shape.iter().zip(&meta.chunk_shape))
        .map(|(&g, (&len, &chunk))| {
            // Blocks big enough that a plan has at most a dozen tasks.
            let least = g.div_ceil(if grid.len() == 1 { 12 } else { 3 }).max(1);
            let mut spans = Vec::new();
            let mut lo = 0;
            while lo < g {
                let hi = (lo + rng.gen_range(least..=least + 2)).min(g);
                spans.push(Span {
                    lo: lo * chunk,
                    hi: (hi * chunk).min(len),
                });
                lo = hi;
            }
            spans
        })
        .collect();
    let mut regions: Vec<Vec<Span>> = vec![Vec::new()];
    for dim in cuts {
        regions = regions
            .into_iter()
            .flat_map(|r| {
                dim.iter().map(move |s| {
                    let mut r = r.clone();
                    r.push(*s);
                    r
                })
            })
            .collect();
    }
    regions
        .into_iter()
        .map(|spans| PlannedTask {
            array: path.clone(),
            region: Region(spans),
        })
        .collect()
}
