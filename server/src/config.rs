//! Configuration files: a coordinator's `node.toml` and the `cluster.toml`
//! clients use to find the cluster. Every key is documented in
//! [`NodeConfig::example`]; unknown keys are refused, and a bad file is
//! reported with the key and line that are wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use floe_protocol::codec::MAX_FRAME_LEN;
use serde::{Deserialize, Serialize};

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message (it names the key and the line).
        error: String,
    },
    /// The values do not make sense together.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// One coordinator's configuration (`floe coordinator --config node.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (non-zero, unique in the cluster).
    pub id: u64,
    /// Where this node listens for peers and clients.
    pub listen: SocketAddr,
    /// The data directory: the Raft log, snapshots and the cluster id.
    pub data_dir: PathBuf,
    /// A file holding the cluster token (a shared secret).
    pub token_file: PathBuf,
    /// The initial voters of a new cluster, by id: where each listens
    /// (this node included). Ignored once the data directory holds state.
    pub peers: BTreeMap<String, SocketAddr>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` (none: off).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Milliseconds between Raft ticks.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Ticks without a leader before an election.
    #[serde(default = "default_election_ticks")]
    pub election_ticks: usize,
    /// Take a state-machine snapshot every this many applied entries.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Raft messages larger than this (snapshots) go to peers in parts of
    /// this many bytes.
    #[serde(default = "default_chunk_bytes")]
    pub raft_chunk_bytes: usize,
    /// A client session idle this long (ms of leader time) is dropped
    /// from the idempotency table (the same on every node).
    #[serde(default = "default_client_expiry_ms")]
    pub client_expiry_ms: u64,
}

fn default_chunk_bytes() -> usize {
    crate::chunks::CHUNK_BYTES
}

fn default_tick_ms() -> u64 {
    20
}

fn default_client_expiry_ms() -> u64 {
    floe_coordinator::state::DEFAULT_CLIENT_EXPIRY_MS
}

fn default_election_ticks() -> usize {
    10
}

fn default_snapshot_every() -> u64 {
    10_000
}

impl NodeConfig {
    /// A documented example (`floe coordinator --print-default-config`).
    pub fn example() -> String {
        r#"# floe coordinator configuration
id = 1                          # this node's id, unique in the cluster
listen = "127.0.0.1:7001"       # peers and clients connect here
data_dir = "/var/lib/floe/n1"   # Raft log, snapshots, cluster id
token_file = "/etc/floe/token"  # the cluster's shared secret
# metrics = "127.0.0.1:9001"    # /metrics, /healthz, /readyz
tick_ms = 20                    # Raft tick
election_ticks = 10             # ticks without a leader before an election
snapshot_every = 10000          # applied entries between snapshots
raft_chunk_bytes = 1048576      # snapshots go to peers in parts this large
client_expiry_ms = 3600000      # idle client sessions are forgotten after this

[peers]                         # the initial voters, this node included
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
3 = "127.0.0.1:7003"
"#
        .to_string()
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(Some(path), &[])
    }

    /// The configuration of `path` (if any) with `overrides` (key, value)
    /// set on top, as command-line flags give them: `peers.2` names one
    /// peer. Checked like a file; errors name the key.
    pub fn load_with(
        path: Option<&Path>,
        overrides: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let shown = path.map_or_else(|| PathBuf::from("(flags)"), Path::to_path_buf);
        if let (Some(path), true) = (path, overrides.is_empty()) {
            // Straight from the text: errors keep their line numbers.
            let config: NodeConfig = parse(path)?;
            config.check(path)?;
            return Ok(config);
        }
        let mut table = match path {
            Some(path) => parse::<toml::Table>(path)?,
            None => toml::Table::new(),
        };
        for (key, value) in overrides {
            set_key(&mut table, key, value).map_err(|why| ConfigError::Invalid {
                path: shown.clone(),
                why,
            })?;
        }
        let config: NodeConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: shown.clone(),
                    error: e.to_string(),
                })?;
        config.check(&shown)?;
        Ok(config)
    }

    /// The initial voters as ids and addresses.
    pub fn peer_addrs(&self) -> BTreeMap<u64, SocketAddr> {
        self.peers
            .iter()
            .filter_map(|(id, addr)| id.parse().ok().map(|id| (id, *addr)))
            .collect()
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |why: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        if self.id == 0 {
            return Err(invalid("id must not be 0".into()));
        }
        for key in self.peers.keys() {
            if key.parse::<u64>().map_or(true, |id| id == 0) {
                return Err(invalid(format!(
                    "peers: {key:?} is not a node id (a positive integer)"
                )));
            }
        }
        if !self.peers.is_empty() && !self.peer_addrs().contains_key(&self.id) {
            return Err(invalid(format!(
                "peers must include this node (id {})",
                self.id
            )));
        }
        if self.raft_chunk_bytes < 1024 || self.raft_chunk_bytes > MAX_FRAME_LEN / 2 {
            return Err(invalid(format!(
                "raft_chunk_bytes must be between 1024 and {}",
                MAX_FRAME_LEN / 2
            )));
        }
        if self.tick_ms == 0 || self.election_ticks < 3 {
            return Err(invalid(
                "tick_ms must be positive and election_ticks at least 3".into(),
            ));
        }
        Ok(())
    }
}

/// What a client needs to reach a cluster (`cluster.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// A file holding the cluster token.
    pub token_file: PathBuf,
    /// Each coordinator's client endpoint, by id.
    pub nodes: BTreeMap<String, SocketAddr>,
    /// Each coordinator's metrics address, by id (optional).
    #[serde(default)]
    pub metrics: BTreeMap<String, SocketAddr>,
    /// The object store URL for chunk data (default: `store/` beside this
    /// file).
    #[serde(default)]
    pub store: Option<String>,
    /// object_store options for `store` (`endpoint`, `region`,
    /// `allow_http`, ...); credentials belong in the environment
    /// (`AWS_ACCESS_KEY_ID`, ...), not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub store_options: BTreeMap<String, String>,
}

impl ClusterFile {
    /// Reads a cluster file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: ClusterFile = parse(path)?;
        if file.nodes.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                why: "nodes: at least one coordinator is needed".into(),
            });
        }
        Ok(file)
    }

    /// Writes the file at `path` atomically (a temporary file renamed over
    /// it), so a reader never sees half of it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// The endpoints by node id.
    pub fn endpoints(&self) -> BTreeMap<u64, SocketAddr> {
        self.nodes
            .iter()
            .filter_map(|(id, addr)| id.parse().ok().map(|id| (id, *addr)))
            .collect()
    }
}

/// Keys whose values are strings (the others are integers).
const STRING_KEYS: [&str; 4] = ["listen", "data_dir", "token_file", "metrics"];

/// Sets one key of a node configuration from a flag's text.
fn set_key(table: &mut toml::Table, key: &str, value: &str) -> Result<(), String> {
    if let Some(id) = key.strip_prefix("peers.") {
        let peers = table
            .entry("peers")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(peers) = peers.as_table_mut() else {
            return Err("peers must be a table of id = \"address\"".into());
        };
        peers.insert(id.to_string(), toml::Value::String(value.to_string()));
        return Ok(());
    }
    let parsed = if STRING_KEYS.contains(&key) {
        toml::Value::String(value.to_string())
    } else {
        let n = value
            .parse::<i64>()
            .map_err(|_| format!("{key}: {value:?} is not an integer"))?;
        toml::Value::Integer(n)
    };
    table.insert(key.to_string(), parsed);
    Ok(())
}

/// Reads the token from `path` (surrounding whitespace ignored).
pub fn read_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            why: "the token file is empty".into(),
        });
    }
    Ok(token)
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_example_is_a_valid_configuration() {
        let (_d, path) = write(&NodeConfig::example());
        let config = NodeConfig::load(&path).unwrap();
        assert_eq!(config.id, 1);
        assert_eq!(config.peer_addrs().len(), 3);
        assert_eq!(config.metrics, None);
    }

    #[test]
    fn flags_override_the_file_and_can_stand_alone() {
        let (_d, path) = write(&NodeConfig::example());
        let set = |k: &str, v: &str| (k.to_string(), v.to_string());
        let config = NodeConfig::load_with(
            Some(&path),
            &[
                set("snapshot_every", "64"),
                set("peers.4", "127.0.0.1:7004"),
            ],
        )
        .unwrap();
        assert_eq!(config.snapshot_every, 64);
        assert_eq!(config.peer_addrs().len(), 4);
        let alone = [
            set("id", "2"),
            set("listen", "127.0.0.1:7002"),
            set("data_dir", "/tmp/n2"),
            set("token_file", "/tmp/token"),
            set("peers.2", "127.0.0.1:7002"),
        ];
        let config = NodeConfig::load_with(None, &alone).unwrap();
        assert_eq!((config.id, config.tick_ms), (2, 20));
        let err = NodeConfig::load_with(Some(&path), &[set("tick_ms", "fast")]).unwrap_err();
        assert!(err.to_string().contains("tick_ms"), "{err}");
        let err = NodeConfig::load_with(None, &alone[1..]).unwrap_err();
        assert!(err.to_string().contains("id"), "{err}");
    }

    #[test]
    fn bad_files_name_the_key_and_line() {
        let (_d, path) = write("id = 1\nlisten = \"nope\"\n");
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let (_d, path) = write(&NodeConfig::example().replace("tick_ms", "tik_ms"));
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("tik_ms"), "{err}");
        let (_d, path) = write(&NodeConfig::example().replace("id = 1 ", "id = 4 "));
        let err = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("peers must include this node"), "{err}");
    }
}
