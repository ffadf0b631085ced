//! The nemesis's shell: carries out a [`schedule`](super::schedule) on a
//! proxied deployment (signals, restarts, cuts, membership commands) and
//! records each fault and heal in the history.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use floe_protocol::{Command, MemberChange};
use floe_server::NetCoordinator;
use floe_worker::Client;

use super::proxy::Network;
use super::schedule::{cuts, resolve, Planned, Step};
use super::History;
use crate::cluster::Deployment;

/// What the nemesis acts on.
pub struct Nemesis<'a> {
    /// The processes.
    pub deployment: &'a Mutex<Deployment>,
    /// The proxies.
    pub network: &'a Network,
    /// Where faults are recorded.
    pub history: &'a History,
    /// The coordinators' ids.
    pub nodes: Vec<u64>,
    /// Client endpoints (for status and membership commands).
    pub endpoints: BTreeMap<u64, SocketAddr>,
    /// The cluster token.
    pub token: String,
    /// A client of the cluster.
    pub coord: Arc<NetCoordinator>,
    /// The deployment's directory (node `i`'s data is in `n<i>`).
    pub dir: PathBuf,
}

/// What a heal undoes.
enum Undo {
    Restart(String),
    Resume(String),
    Reconnect,
    Readd(u64),
    Nothing,
}

impl Nemesis<'_> {
    /// Carries out `steps` (times from `start`), stopping early at
    /// `deadline`; returns the faults injected, by kind.
    pub fn run(&self, steps: &[Step], start: Instant, deadline: Instant) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return counts;
        };
        for step in steps {
            let at = start + Duration::from_millis(step.at_ms);
            if at >= deadline {
                break;
            }
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            let leader = rt.block_on(leader_of(&self.endpoints, &self.token));
            let name = step.fault.kind().name();
            let (undo, value) = match rt.block_on(self.inject(&step.fault, leader)) {
                Ok(done) => done,
                Err(e) => (Undo::Nothing, json!({"skipped": e.to_string()})),
            };
            *counts.entry(name.to_string()).or_insert(0) += 1;
            self.history
                .line(json!("nemesis"), "info", name, with_leader(value, leader));
            std::thread::sleep(Duration::from_millis(step.hold_ms));
            let healed = rt.block_on(self.heal(undo));
            let value = match healed {
                Ok(()) => json!({"fault": name}),
                Err(e) => json!({"fault": name, "error": e.to_string()}),
            };
            self.history.line(json!("nemesis"), "info", "heal", value);
        }
        counts
    }

    async fn inject(&self, fault: &Planned, leader: Option<u64>) -> Result<(Undo, Value)> {
        let target = |t| resolve(t, &self.nodes, leader).ok_or_else(|| anyhow!("no target"));
        Ok(match fault {
            Planned::Kill(t) => self.kill(format!("n{}", target(*t)?), "node")?,
            Planned::KillWorker(w) => self.kill(format!("w{w}"), "worker")?,
            Planned::Pause(t) => self.pause(format!("n{}", target(*t)?), "node")?,
            Planned::PauseWorker(w) => self.pause(format!("w{w}"), "worker")?,
            Planned::Partition(p) => {
                let links = cuts(p, &self.nodes, leader);
                let value = json!({"partition": format!("{p:?}"), "cut": links});
                self.network.cut(links);
                (Undo::Reconnect, value)
            }
            Planned::Member(t) => {
                let id = target(*t)?;
                if Some(id) == leader {
                    bail!("n{id} became the leader");
                }
                self.remove(id).await?;
                (
                    Undo::Readd(id),
                    json!({"node": format!("n{id}"), "removed": true}),
                )
            }
        })
    }

    /// SIGKILL process `name` (a `role`); restarted when healed.
    fn kill(&self, name: String, role: &str) -> Result<(Undo, Value)> {
        self.with_deployment(|d| d.kill(&name))?;
        Ok((Undo::Restart(name.clone()), json!({ role: name })))
    }

    /// SIGSTOP process `name` (a `role`); continued when healed.
    fn pause(&self, name: String, role: &str) -> Result<(Undo, Value)> {
        self.with_deployment(|d| d.signal(&name, libc::SIGSTOP))?;
        Ok((Undo::Resume(name.clone()), json!({ role: name })))
    }

    async fn heal(&self, undo: Undo) -> Result<()> {
        match undo {
            Undo::Restart(name) => self.with_deployment(|d| d.restart(&name))??,
            Undo::Resume(name) => self.with_deployment(|d| d.signal(&name, libc::SIGCONT))?,
            Undo::Reconnect => self.network.heal(),
            Undo::Readd(id) => self.readd(id).await?,
            Undo::Nothing => {}
        }
        Ok(())
    }

    fn with_deployment<T>(&self, f: impl FnOnce(&mut Deployment) -> T) -> Result<T> {
        let mut d = self
            .deployment
            .lock()
            .map_err(|_| anyhow!("the deployment lock is poisoned"))?;
        Ok(f(&mut d))
    }

    /// Removes node `id` from the cluster; it stops by itself (or is
    /// stopped after 5 s).
    async fn remove(&self, id: u64) -> Result<()> {
        let change = Command::ChangeMembers(MemberChange::Remove { id });
        let client = Client::new(self.coord.clone());
        tokio::time::timeout(Duration::from_secs(10), client.command(change))
            .await
            .map_err(|_| anyhow!("removing n{id} timed out"))??;
        let name = format!("n{id}");
        let until = Instant::now() + Duration::from_secs(5);
        while self.with_deployment(|d| d.running(&name))? && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.with_deployment(|d| d.kill(&name))?;
        Ok(())
    }

    /// Starts node `id` again with a wiped data directory and adds it
    /// back; waits until a leader counts it among the voters.
    async fn readd(&self, id: u64) -> Result<()> {
        let name = format!("n{id}");
        let data = self.dir.join(&name);
        self.with_deployment(|d| d.rejoin(&name, &data))??;
        let change = Command::ChangeMembers(MemberChange::Add { id });
        let client = Client::new(self.coord.clone());
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let tried =
                tokio::time::timeout(Duration::from_secs(5), client.command(change.clone()));
            if let Ok(Ok(_)) = tried.await {
                if voters(&self.endpoints, &self.token).await.contains(&id) {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                bail!("n{id} was not added back within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn with_leader(mut value: Value, leader: Option<u64>) -> Value {
    if let Some(map) = value.as_object_mut() {
        map.insert("leader".into(), json!(leader.map(|l| format!("n{l}"))));
    }
    value
}

/// The leader as some node reports it.
pub async fn leader_of(endpoints: &BTreeMap<u64, SocketAddr>, token: &str) -> Option<u64> {
    for addr in endpoints.values() {
        let status = floe_server::net::node_status(*addr, token);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(500), status).await {
            if s.leader.is_some() {
                return s.leader;
            }
        }
    }
    None
}

/// The voters as a leader reports them (empty if none answers).
async fn voters(endpoints: &BTreeMap<u64, SocketAddr>, token: &str) -> Vec<u64> {
    for addr in endpoints.values() {
        let status = floe_server::net::node_status(*addr, token);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(500), status).await {
            if s.role == "leader" {
                return s.voters;
            }
        }
    }
    Vec::new()
}
