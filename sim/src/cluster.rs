//! The coordinators: real raft nodes over the real state machine, which
//! crash (keeping only what they synced) and restart from it; nodes join
//! (fresh storage, no peers: they catch up by snapshot) and, once removed
//! from the configuration, are decommissioned.

use std::collections::BTreeMap;

use floe_coordinator::node::{Node, NodeConfig, NodeError};
use floe_coordinator::storage::MemStorage;
use floe_coordinator::{Config, State};

/// A coordinator node as the simulation runs it.
pub type SimNode = Node<State, MemStorage>;

/// One coordinator's slot: running, or down with its durable storage.
pub enum Slot {
    /// Running.
    Up {
        /// The node.
        node: Box<SimNode>,
        /// Incarnation: bumped by every crash, so fsync completions meant
        /// for an earlier incarnation are ignored.
        life: u32,
        /// When its last scheduled fsync completes (fsyncs finish in order).
        synced_at: u64,
    },
    /// Crashed.
    Down {
        /// What survived the crash.
        durable: Box<MemStorage>,
        /// Incarnation of the next start.
        life: u32,
    },
}

/// The coordinators that exist, by id (booted with `1..=n`; joiners get
/// fresh ids; decommissioned nodes are gone for good).
pub struct Cluster {
    configs: BTreeMap<u64, NodeConfig>,
    state_config: Config,
    slots: BTreeMap<u64, Slot>,
}

impl Cluster {
    /// Boots `configs.len()` nodes, each with a fresh state machine.
    pub fn boot(configs: Vec<NodeConfig>, state_config: Config) -> Result<Self, NodeError> {
        let mut c = Cluster {
            configs: BTreeMap::new(),
            state_config,
            slots: BTreeMap::new(),
        };
        for cfg in configs {
            c.start(cfg)?;
        }
        Ok(c)
    }

    /// Starts a node on fresh storage: a founding member (`cfg.peers` set)
    /// or a joiner (`cfg.peers` empty), which waits for the leader's
    /// snapshot once a conf change adds it.
    pub fn start(&mut self, cfg: NodeConfig) -> Result<(), NodeError> {
        let node = Node::bootstrap(cfg.clone(), State::new(self.state_config.clone()))?;
        self.slots.insert(
            cfg.id,
            Slot::Up {
                node: Box::new(node),
                life: 0,
                synced_at: 0,
            },
        );
        self.configs.insert(cfg.id, cfg);
        Ok(())
    }

    /// A template for a joiner's configuration: a founding member's, with
    /// `id` and no peers.
    pub fn joiner_config(&self, id: u64) -> Option<NodeConfig> {
        let mut cfg = self.configs.values().next()?.clone();
        cfg.id = id;
        cfg.peers = Vec::new();
        Some(cfg)
    }

    /// Removes node `id` from the simulation for good (it was removed from
    /// the configuration): its messages and requests are dropped from now on.
    pub fn decommission(&mut self, id: u64) {
        self.slots.remove(&id);
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there is no node.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Ids of the nodes that exist (running or down), sorted.
    pub fn ids(&self) -> Vec<u64> {
        self.slots.keys().copied().collect()
    }

    /// True when node `id` exists (running or down).
    pub fn exists(&self, id: u64) -> bool {
        self.slots.contains_key(&id)
    }

    /// The slot of node `id`.
    pub fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots.get_mut(&id)
    }

    /// The running node `id`.
    pub fn up(&mut self, id: u64) -> Option<&mut SimNode> {
        match self.slot_mut(id)? {
            Slot::Up { node, .. } => Some(node),
            Slot::Down { .. } => None,
        }
    }

    /// The running node `id`, if its incarnation is `life`.
    pub fn up_as(&mut self, id: u64, life: u32) -> Option<&mut SimNode> {
        match self.slot_mut(id)? {
            Slot::Up { node, life: l, .. } if *l == life => Some(node),
            _ => None,
        }
    }

    /// Every running node, read-only.
    pub fn running(&self) -> impl Iterator<Item = &SimNode> + '_ {
        self.slots.values().filter_map(|s| match s {
            Slot::Up { node, .. } => Some(node.as_ref()),
            Slot::Down { .. } => None,
        })
    }

    /// Ids of the nodes that are down.
    pub fn down_ids(&self) -> Vec<u64> {
        let down = |(&id, s): (&u64, &Slot)| matches!(s, Slot::Down { .. }).then_some(id);
        self.slots.iter().filter_map(down).collect()
    }

    /// Crashes node `id`: everything it did not sync is lost.
    pub fn crash(&mut self, id: u64) {
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        if let Slot::Up { node, life, .. } = slot {
            let durable = node.storage().durable();
            *slot = Slot::Down {
                durable: Box::new(durable),
                life: *life + 1,
            };
        }
    }

    /// Wipes the disk of node `id`, which is down: it restarts empty, as a
    /// member that lost its data (it votes only once a leader gave it the
    /// state, and the leader finds its log gone and sends it a snapshot).
    /// Done only when the voters other than `id` keep, durably, everything
    /// any node knows committed on a majority: the check an operator makes
    /// before replacing a disk (Raft cannot survive losing a disk that a
    /// committed entry needs). Returns whether it wiped.
    pub fn wipe(&mut self, id: u64) -> bool {
        let voters = self.voters();
        if !voters.contains(&id) || !matches!(self.slots.get(&id), Some(Slot::Down { .. })) {
            return false;
        }
        // The entry most recently known committed, as its leader holds it.
        let Some((committed, term)) = self.last_committed() else {
            return false;
        };
        let keeping = voters
            .iter()
            .filter(|&&v| v != id && self.durably_holds(v, committed, term))
            .count();
        if keeping < voters.len() / 2 + 1 {
            return false;
        }
        if let Some(Slot::Down { durable, .. }) = self.slots.get_mut(&id) {
            **durable = MemStorage::new();
        }
        if let Some(cfg) = self.configs.get_mut(&id) {
            cfg.peers = Vec::new();
            cfg.lost_data = true;
        }
        true
    }

    /// The highest index a running node knows committed, with its term.
    fn last_committed(&mut self) -> Option<(u64, u64)> {
        let best = self.running().max_by_key(|n| n.commit_index())?;
        let index = best.commit_index();
        let term = raft::Storage::term(best.storage(), index).ok()?;
        Some((index, term))
    }

    /// True when node `id`'s disk holds entry `index` of `term`.
    fn durably_holds(&self, id: u64, index: u64, term: u64) -> bool {
        match self.slots.get(&id) {
            Some(Slot::Up { node, .. }) => node.storage().durably_holds(index, term),
            Some(Slot::Down { durable, .. }) => durable.durably_holds(index, term),
            None => false,
        }
    }

    /// Restarts node `id` from its durable storage with a fresh state
    /// machine (restored from the stored snapshot, then the log replayed).
    pub fn restart(&mut self, id: u64) -> Result<(), NodeError> {
        let Some(cfg) = self.configs.get(&id).cloned() else {
            return Ok(());
        };
        let fresh = State::new(self.state_config.clone());
        let Some(slot) = self.slot_mut(id) else {
            return Ok(());
        };
        if let Slot::Down { durable, life } = slot {
            let node = Node::restart(cfg, fresh, (**durable).clone())?;
            *slot = Slot::Up {
                node: Box::new(node),
                life: *life,
                synced_at: 0,
            };
        }
        Ok(())
    }

    /// The incarnation of node `id` and when its fsync queue drains; the
    /// caller schedules a new fsync completion at or after it.
    pub fn fsync_slot(&mut self, id: u64, at: u64) -> Option<(u32, u64)> {
        match self.slot_mut(id)? {
            Slot::Up {
                life, synced_at, ..
            } => {
                *synced_at = (*synced_at).max(at);
                Some((*life, *synced_at))
            }
            Slot::Down { .. } => None,
        }
    }

    /// The configuration as the most advanced running node applied it
    /// (highest applied index; ties to the lowest id): the voters whose
    /// majority must stay up.
    pub fn voters(&self) -> Vec<u64> {
        let mut best: Option<&SimNode> = None;
        for n in self.running() {
            if best.is_none_or(|b| n.applied_index() > b.applied_index()) {
                best = Some(n);
            }
        }
        best.map(|n| n.voters()).unwrap_or_else(|| self.ids())
    }
}
