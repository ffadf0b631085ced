//! The nemesis's plan: which fault, on whom, when and for how long, drawn
//! from the seed before the run starts, and the network cuts a partition
//! means. Pure: the shell (`super::nemesis`) only carries a plan out, so a
//! run's faults are a function of its seed and can be printed, tested and
//! replayed.

use std::collections::BTreeSet;

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The kinds of fault the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Fault {
    /// SIGKILL a coordinator (the leader at times), restart it later.
    Kill,
    /// SIGSTOP a coordinator for longer than an election, then SIGCONT.
    Pause,
    /// Cut links between coordinators (through the harness's proxies):
    /// isolate a node, split into majority and minority, a ring, or a
    /// one-way cut.
    Partition,
    /// Remove a coordinator from the cluster, then add it back with a
    /// wiped data directory, while writes go on.
    Member,
}

impl Fault {
    /// The name used in histories and summaries.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::Member => "member",
        }
    }
}

/// Who a fault hits; the leader is only known when the fault happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The leader at that moment (any node when there is none).
    Leader,
    /// A given node.
    Node(u64),
    /// The `k`-th node that is not the leader (modulo their number).
    Follower(usize),
}

/// How the coordinators' links are cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partition {
    /// The target hears nothing and reaches no one.
    Isolate(Target),
    /// These nodes (a minority) against the rest.
    Halves(Vec<u64>),
    /// Each node reaches only its two neighbours in id order.
    Ring,
    /// The target cannot send to anyone but still hears everyone.
    OneWay(Target),
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Planned {
    /// SIGKILL the target; restart it when healed.
    Kill(Target),
    /// SIGSTOP the target; SIGCONT when healed.
    Pause(Target),
    /// Cut links; restore them when healed.
    Partition(Partition),
    /// Remove the target (never the leader: it cannot remove itself) and
    /// add it back, wiped, when healed.
    Member(Target),
    /// SIGKILL worker process `w<i>`; restart it when healed.
    KillWorker(u64),
    /// SIGSTOP worker process `w<i>` (longer than a lease, at times);
    /// SIGCONT when healed.
    PauseWorker(u64),
}

impl Planned {
    /// The kind of fault.
    pub fn kind(&self) -> Fault {
        match self {
            Planned::Kill(_) | Planned::KillWorker(_) => Fault::Kill,
            Planned::Pause(_) | Planned::PauseWorker(_) => Fault::Pause,
            Planned::Partition(_) => Fault::Partition,
            Planned::Member(_) => Fault::Member,
        }
    }
}

/// A fault at `at_ms` after the start, healed `hold_ms` later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// When it starts, ms after the workload starts.
    pub at_ms: u64,
    /// What happens.
    pub fault: Planned,
    /// How long it lasts before the heal.
    pub hold_ms: u64,
}

/// The faults of a run of `duration_ms` on `nodes` and `workers` worker
/// processes: one at a time, 1-3 s apart, each held 0.5-3 s (longer than
/// an election timeout, and at times than a lease of the chaos jobs), the
/// last one healed 2 s before the end so that the workload ends on a
/// healthy cluster. Each kind in `kinds` is equally likely; a third of
/// the kills and pauses hit a worker when there are workers.
pub fn schedule(
    seed: u64,
    kinds: &[Fault],
    nodes: &[u64],
    workers: u64,
    duration_ms: u64,
) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    let mut at = 0;
    if kinds.is_empty() || nodes.is_empty() {
        return out;
    }
    loop {
        at += rng.gen_range(1_000..3_000);
        let hold = rng.gen_range(500..3_000);
        if at + hold + 2_000 > duration_ms {
            return out;
        }
        let kind = kinds[rng.gen_range(0..kinds.len())];
        out.push(Step {
            at_ms: at,
            fault: plan(kind, nodes, workers, &mut rng),
            hold_ms: hold,
        });
        at += hold;
    }
}

fn plan(kind: Fault, nodes: &[u64], workers: u64, rng: &mut StdRng) -> Planned {
    let target = |rng: &mut StdRng| match rng.gen_range(0..3) {
        0 => Target::Leader,
        1 => Target::Follower(rng.gen_range(0..nodes.len())),
        _ => Target::Node(nodes[rng.gen_range(0..nodes.len())]),
    };
    let worker =
        |rng: &mut StdRng| (workers > 0 && rng.gen_ratio(1, 3)).then(|| rng.gen_range(1..=workers));
    match kind {
        Fault::Kill => worker(rng).map_or_else(|| Planned::Kill(target(rng)), Planned::KillWorker),
        Fault::Pause => {
            worker(rng).map_or_else(|| Planned::Pause(target(rng)), Planned::PauseWorker)
        }
        Fault::Member => Planned::Member(Target::Follower(rng.gen_range(0..nodes.len()))),
        Fault::Partition => Planned::Partition(match rng.gen_range(0..4) {
            0 => Partition::Isolate(target(rng)),
            1 => {
                let mut minority = nodes.to_vec();
                minority.shuffle(rng);
                minority.truncate((nodes.len() - 1) / 2);
                minority.sort_unstable();
                Partition::Halves(minority)
            }
            2 if nodes.len() > 3 => Partition::Ring,
            _ => Partition::OneWay(target(rng)),
        }),
    }
}

/// The node `target` names, given the current leader.
pub fn resolve(target: Target, nodes: &[u64], leader: Option<u64>) -> Option<u64> {
    match target {
        Target::Node(id) => Some(id),
        Target::Leader => leader.or_else(|| nodes.first().copied()),
        Target::Follower(k) => {
            let followers: Vec<u64> = nodes
                .iter()
                .copied()
                .filter(|n| Some(*n) != leader)
                .collect();
            (!followers.is_empty()).then(|| followers[k % followers.len()])
        }
    }
}

/// The links a partition cuts, as `(from, to)`: `from` can no longer send
/// to `to`.
pub fn cuts(partition: &Partition, nodes: &[u64], leader: Option<u64>) -> BTreeSet<(u64, u64)> {
    let pairs = || {
        nodes
            .iter()
            .flat_map(move |a| nodes.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a != b)
    };
    match partition {
        Partition::Isolate(t) => {
            let Some(t) = resolve(*t, nodes, leader) else {
                return BTreeSet::new();
            };
            pairs().filter(|(a, b)| *a == t || *b == t).collect()
        }
        Partition::Halves(minority) => pairs()
            .filter(|(a, b)| minority.contains(a) != minority.contains(b))
            .collect(),
        Partition::Ring => {
            let n = nodes.len();
            let place = |id: u64| nodes.iter().position(|x| *x == id).unwrap_or(0);
            pairs()
                .filter(|(a, b)| {
                    let d = (place(*a) + n - place(*b)) % n;
                    d != 1 && d != n - 1
                })
                .collect()
        }
        Partition::OneWay(t) => {
            let Some(t) = resolve(*t, nodes, leader) else {
                return BTreeSet::new();
            };
            pairs().filter(|(a, _)| *a == t).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Fault; 4] = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Member];

    #[test]
    fn a_schedule_is_a_function_of_its_seed() {
        let nodes = [1, 2, 3];
        assert_eq!(
            schedule(7, &ALL, &nodes, 2, 60_000),
            schedule(7, &ALL, &nodes, 2, 60_000)
        );
        assert_ne!(
            schedule(7, &ALL, &nodes, 2, 60_000),
            schedule(8, &ALL, &nodes, 2, 60_000)
        );
    }

    #[test]
    fn faults_are_sequential_and_healed_before_the_end() {
        let steps = schedule(3, &ALL, &[1, 2, 3, 4, 5], 2, 120_000);
        assert!(steps.len() >= 20, "{} steps", steps.len());
        for pair in steps.windows(2) {
            assert!(pair[0].at_ms + pair[0].hold_ms < pair[1].at_ms);
        }
        let last = steps.last().expect("steps");
        assert!(last.at_ms + last.hold_ms + 2_000 <= 120_000);
        let kinds: BTreeSet<Fault> = steps.iter().map(|s| s.fault.kind()).collect();
        assert_eq!(kinds.len(), 4, "every kind drawn in 2 minutes: {kinds:?}");
    }

    #[test]
    fn only_the_kinds_asked_for() {
        let steps = schedule(1, &[Fault::Pause], &[1, 2, 3], 0, 60_000);
        assert!(steps.iter().all(|s| s.fault.kind() == Fault::Pause));
        assert!(schedule(1, &[], &[1, 2, 3], 2, 60_000).is_empty());
    }

    #[test]
    fn workers_are_hit_only_when_there_are_some() {
        let hits = |workers| {
            schedule(
                5,
                &[Fault::Kill, Fault::Pause],
                &[1, 2, 3],
                workers,
                300_000,
            )
            .iter()
            .filter(|s| matches!(s.fault, Planned::KillWorker(_) | Planned::PauseWorker(_)))
            .count()
        };
        assert_eq!(hits(0), 0);
        assert!(hits(2) > 10, "{}", hits(2));
    }

    #[test]
    fn a_minority_is_a_minority() {
        for seed in 0..50 {
            for step in schedule(seed, &[Fault::Partition], &[1, 2, 3, 4, 5], 2, 30_000) {
                if let Planned::Partition(Partition::Halves(m)) = step.fault {
                    assert_eq!(m.len(), 2);
                }
            }
        }
    }

    #[test]
    fn targets_resolve_against_the_leader() {
        let nodes = [1, 2, 3];
        assert_eq!(resolve(Target::Leader, &nodes, Some(2)), Some(2));
        assert_eq!(resolve(Target::Follower(0), &nodes, Some(1)), Some(2));
        assert_eq!(resolve(Target::Follower(3), &nodes, Some(1)), Some(3));
        assert_eq!(resolve(Target::Follower(1), &nodes, None), Some(2));
    }

    #[test]
    fn partitions_cut_the_right_links() {
        let nodes = [1, 2, 3];
        let isolate = cuts(&Partition::Isolate(Target::Leader), &nodes, Some(2));
        let want: BTreeSet<_> = [(1, 2), (2, 1), (2, 3), (3, 2)].into();
        assert_eq!(isolate, want);
        let one_way = cuts(&Partition::OneWay(Target::Node(3)), &nodes, None);
        assert_eq!(one_way, [(3, 1), (3, 2)].into());
        let halves = cuts(&Partition::Halves(vec![1]), &nodes, None);
        assert_eq!(halves, [(1, 2), (1, 3), (2, 1), (3, 1)].into());
        let five = [1, 2, 3, 4, 5];
        let ring = cuts(&Partition::Ring, &five, None);
        // 1 keeps 2 and 5; loses 3 and 4 (both ways).
        assert!(ring.contains(&(1, 3)) && ring.contains(&(4, 1)));
        assert!(!ring.contains(&(1, 2)) && !ring.contains(&(5, 1)));
        assert_eq!(ring.len(), 10);
    }
}
