//! The coordinators: real raft nodes over the real state machine, which
//! crash (keeping only what they synced) and restart from it.

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

/// The coordinators, ids `1..=n`.
pub struct Cluster {
    configs: Vec<NodeConfig>,
    state_config: Config,
    slots: Vec<Slot>,
}

impl Cluster {
    /// Boots `configs.len()` nodes, each with a fresh state machine.
    pub fn boot(configs: Vec<NodeConfig>, state_config: Config) -> Result<Self, NodeError> {
        let mut slots = Vec::new();
        for cfg in &configs {
            let node = Node::bootstrap(cfg.clone(), State::new(state_config.clone()))?;
            slots.push(Slot::Up {
                node: Box::new(node),
                life: 0,
                synced_at: 0,
            });
        }
        Ok(Cluster {
            configs,
            state_config,
            slots,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when there is no node.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.slots.len() as u64).collect()
    }

    /// The slot of node `id`.
    pub fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots.get_mut((id as usize).checked_sub(1)?)
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
        self.slots.iter().filter_map(|s| match s {
            Slot::Up { node, .. } => Some(node.as_ref()),
            Slot::Down { .. } => None,
        })
    }

    /// Ids of the nodes that are down.
    pub fn down_ids(&self) -> Vec<u64> {
        let down = |(i, s): (usize, &Slot)| matches!(s, Slot::Down { .. }).then_some(i as u64 + 1);
        self.slots.iter().enumerate().filter_map(down).collect()
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

    /// Restarts node `id` from its durable storage with a fresh state
    /// machine (restored from the stored snapshot, then the log replayed).
    pub fn restart(&mut self, id: u64) -> Result<(), NodeError> {
        let cfg = self.configs[(id - 1) as usize].clone();
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
}
