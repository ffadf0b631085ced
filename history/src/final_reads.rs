//! The final reads (`read-log`, `read-tags`) and the order of a branch's
//! chain derived from them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{Line, Type};

/// A commit as a final read lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Its message.
    pub message: String,
    /// The commit it landed on.
    pub parent: Option<String>,
    /// The commit its changes were made against.
    pub base: Option<String>,
    /// The chunks it wrote, by array.
    pub chunks: BTreeMap<String, BTreeSet<Vec<u64>>>,
    /// Whether the read listed `chunks` at all: without them nothing is
    /// known about what the commit wrote (an old history).
    pub chunks_listed: bool,
}

impl Entry {
    /// Whether it wrote any chunk of any array.
    pub fn wrote_chunks(&self) -> bool {
        self.chunks.values().any(|c| !c.is_empty())
    }
}

/// What the final reads say: each branch's commits and each repo's tags.
#[derive(Debug, Default)]
pub struct Final {
    /// `(repo, branch)` -> commits on the branch, in any order.
    pub logs: BTreeMap<(String, String), Vec<Entry>>,
    /// `(repo, tag)` -> the commit it names.
    pub tags: BTreeMap<(String, String), String>,
}

/// Collects the final reads (`read-log`, `read-tags` completed `ok`).
pub fn final_state(lines: &[Line]) -> Final {
    let mut out = Final::default();
    for line in lines.iter().filter(|l| l.kind == Type::Ok) {
        let v = &line.value;
        let repo = v.get("repo").and_then(Value::as_str).unwrap_or_default();
        match line.f.as_str() {
            "read-log" => {
                let branch = v.get("branch").and_then(Value::as_str).unwrap_or("main");
                let log = v.get("log").and_then(Value::as_array).into_iter().flatten();
                let entries = log.filter_map(entry).collect();
                out.logs
                    .insert((repo.to_string(), branch.to_string()), entries);
            }
            "read-tags" => {
                let tags = v
                    .get("tags")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten();
                for (tag, at) in tags {
                    if let Some(at) = at.as_str() {
                        out.tags
                            .insert((repo.to_string(), tag.clone()), at.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A final read's commit; `None` without an id and a message.
fn entry(e: &Value) -> Option<Entry> {
    let text = |key: &str| e.get(key).and_then(Value::as_str).map(str::to_string);
    let listed = e.get("chunks").and_then(Value::as_object);
    let chunks = listed
        .into_iter()
        .flatten()
        .map(|(path, coords)| {
            let coords = coords.as_array().into_iter().flatten();
            let coords = coords
                .filter_map(|c| c.as_array()?.iter().map(Value::as_u64).collect())
                .collect();
            (path.clone(), coords)
        })
        .collect();
    Some(Entry {
        id: text("id")?,
        message: text("message")?,
        parent: text("parent"),
        base: text("base"),
        chunks,
        chunks_listed: listed.is_some(),
    })
}

/// A branch's commits in chain order, root first, derived from parent
/// links (a read-log may list them in any order).
#[derive(Clone, Debug, Default)]
pub struct Chain {
    /// Commit ids, root first.
    pub order: Vec<String>,
    /// Commit id -> its index in `order`.
    pub position: BTreeMap<String, usize>,
}

impl Chain {
    /// Orders a read-log. `Ok(None)`: the log has no parent links (an old
    /// history) and more than one commit, so its order is unknown. `Err`:
    /// the links do not form one chain.
    pub fn of(log: &[Entry]) -> Result<Option<Chain>, String> {
        if log.iter().all(|e| e.parent.is_none()) {
            return Ok((log.len() <= 1).then(|| Chain::from_root(log.iter().map(|e| e.id.clone()))));
        }
        let by_id: BTreeMap<&str, &Entry> = log.iter().map(|e| (e.id.as_str(), e)).collect();
        if by_id.len() != log.len() {
            return Err("it lists a commit id twice".into());
        }
        let parents: BTreeSet<&str> = log.iter().filter_map(|e| e.parent.as_deref()).collect();
        let tips: Vec<&str> = by_id
            .keys()
            .copied()
            .filter(|id| !parents.contains(id))
            .collect();
        let [tip] = tips.as_slice() else {
            return Err(format!("it has {} tips: {tips:?}", tips.len()));
        };
        // Walk down from the tip; the root's parent may be missing from
        // the log (a log may start anywhere), which ends the walk.
        let mut newest_first = Vec::new();
        let mut at = Some(*tip);
        while let Some(e) = at.and_then(|id| by_id.get(id)) {
            if newest_first.len() == log.len() {
                return Err("its parent links form a cycle".into());
            }
            newest_first.push(e.id.clone());
            at = e.parent.as_deref();
        }
        if newest_first.len() != log.len() {
            let off = log.len() - newest_first.len();
            return Err(format!(
                "{off} of its commits are not on the chain from its tip {tip}"
            ));
        }
        Ok(Some(Chain::from_root(newest_first.into_iter().rev())))
    }

    fn from_root(ids: impl Iterator<Item = String>) -> Chain {
        let order: Vec<String> = ids.collect();
        let position = order
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        Chain { order, position }
    }

    /// Where `id` is on the chain (0: the root), if it is on it.
    pub fn at(&self, id: &str) -> Option<usize> {
        self.position.get(id).copied()
    }

    /// The commits strictly after `from` up to and including `to`, if both
    /// are on the chain and `from` is before `to`.
    pub fn between(&self, from: &str, to: &str) -> Option<&[String]> {
        let (a, b) = (self.at(from)?, self.at(to)?);
        (a < b).then(|| &self.order[a + 1..=b])
    }
}
