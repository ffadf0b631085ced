//! A member that lost its data directory rejoins without a vote until a
//! leader has given it the state; a brand-new node votes at once.

use floe_coordinator::node::{Effect, Node, NodeConfig};
use floe_coordinator::storage::MemStorage;
use floe_coordinator::{Config, State};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

fn joiner(lost_data: bool) -> Node<State, MemStorage> {
    let mut config = NodeConfig::new(3, Vec::new(), 1);
    config.lost_data = lost_data;
    Node::new(config, State::new(Config::default()), MemStorage::new()).unwrap()
}

/// Asks node 3 for its vote as candidate 1 in term 5, and returns whether
/// it granted it.
fn grants_vote(node: &mut Node<State, MemStorage>) -> bool {
    let mut ask = Message::default();
    ask.set_msg_type(MessageType::MsgRequestVote);
    ask.from = 1;
    ask.to = 3;
    ask.term = 5;
    node.step(1, &ask.write_to_bytes().unwrap()).unwrap();
    let mut granted = false;
    while let Some(effect) = node.poll() {
        match effect {
            Effect::Persist { token } => node.persisted(token),
            Effect::Send { to: 1, bytes } => {
                let reply = Message::parse_from_bytes(&bytes).unwrap();
                granted |=
                    reply.get_msg_type() == MessageType::MsgRequestVoteResponse && !reply.reject;
            }
            _ => {}
        }
    }
    granted
}

#[test]
fn a_node_that_lost_its_data_does_not_vote_before_it_has_the_state() {
    assert!(!grants_vote(&mut joiner(true)));
}

#[test]
fn a_brand_new_node_votes_at_once() {
    assert!(grants_vote(&mut joiner(false)));
}
