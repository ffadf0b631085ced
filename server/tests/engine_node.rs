//! The node core on the raft-engine log: what it acknowledged survives a
//! restart from the data directory, through snapshots and compaction too.

use floe_coordinator::node::{Effect, Node, NodeConfig};
use floe_coordinator::{Config, State};
use floe_protocol::{ClientId, Command, Envelope, Outcome, Query, Reply, RepoName, Request};
use floe_server::log::EngineLog;

type EngineNode = Node<State, EngineLog>;

fn config() -> NodeConfig {
    let mut config = NodeConfig::new(1, vec![1], 7);
    config.snapshot_every = 5;
    config.digest_every = 0;
    config
}

fn open(dir: &std::path::Path) -> EngineNode {
    let log = EngineLog::open(dir).unwrap();
    Node::new(config(), State::new(Config::default()), log).unwrap()
}

/// Runs the node's effects (fsyncs at once) and returns the replies.
fn drain(node: &mut EngineNode) -> Vec<(u64, Outcome)> {
    let mut replies = Vec::new();
    while let Some(effect) = node.poll() {
        match effect {
            Effect::Persist { token } => node.persisted(token),
            Effect::Reply { seq, outcome, .. } => replies.push((seq, outcome)),
            Effect::Failed { error } => panic!("the node failed: {error}"),
            _ => {}
        }
    }
    replies
}

fn lead(node: &mut EngineNode) {
    for _ in 0..50 {
        node.tick();
        drain(node);
        if node.is_leader() {
            return;
        }
    }
    panic!("a one-node cluster elects itself");
}

fn repo(i: u64) -> RepoName {
    RepoName::new(format!("r{i}")).unwrap()
}

#[test]
fn acknowledged_commands_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let applied = {
        let mut node = open(dir.path());
        lead(&mut node);
        let open = Envelope {
            client: ClientId(9),
            seq: 0,
            request: Request::Command(Command::OpenClient),
        };
        node.propose(1_000, open);
        assert!(matches!(
            drain(&mut node).as_slice(),
            [(0, Ok(Reply::Done))]
        ));
        for seq in 1..=12 {
            let request = Request::Command(Command::CreateRepo { repo: repo(seq) });
            let envelope = Envelope {
                client: ClientId(9),
                seq,
                request,
            };
            node.propose(1_000 + seq, envelope);
            let replies = drain(&mut node);
            assert!(
                matches!(replies.as_slice(), [(s, Ok(Reply::RepoCreated { .. }))] if *s == seq),
                "{replies:?}"
            );
        }
        node.applied_index()
    };
    // Every 5 entries a snapshot compacted the log: the restart restores the
    // latest one and replays the committed entries after it.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("snap"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    let mut node = open(dir.path());
    lead(&mut node);
    assert!(
        node.applied_index() > applied,
        "replayed, plus the new term's entry"
    );
    for i in 1..=12 {
        node.read(
            Query::Checkout {
                repo: repo(i),
                branch: floe_protocol::BranchName::new("main").unwrap(),
            },
            ClientId(9),
            100 + i,
        );
        let replies = drain(&mut node);
        assert!(
            matches!(replies.as_slice(), [(_, Ok(Reply::Commit(_)))]),
            "repo r{i} after the restart: {replies:?}"
        );
    }
}
