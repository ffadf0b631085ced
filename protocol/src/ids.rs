//! Identifiers. Names chosen by users are validated strings; ids assigned by
//! the coordinator are integers so that the replicated state machine can mint
//! them deterministically.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::error::FloeError;

/// Longest repo, branch or tag name accepted.
pub const MAX_NAME_LEN: usize = 128;

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = FloeError;
            fn try_from(name: String) -> Result<Self, FloeError> {
                Self::new(name)
            }
        }

        impl $name {
            /// Validates and wraps a name: 1 to 128 characters of `[A-Za-z0-9._-]`.
            pub fn new(name: impl Into<String>) -> Result<Self, FloeError> {
                let name = name.into();
                validate_name($what, &name)?;
                Ok(Self(name))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn validate_name(what: &'static str, name: &str) -> Result<(), FloeError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(FloeError::InvalidName {
            what: what.to_string(),
            name: name.chars().take(MAX_NAME_LEN).collect(),
        });
    }
    Ok(())
}

name_type!(
    /// The name of a repository hosted by the cluster.
    RepoName,
    "repo"
);
name_type!(
    /// The name of a branch (mutable pointer to a commit).
    BranchName,
    "branch"
);
name_type!(
    /// The name of a tag (immutable pointer to a commit).
    TagName,
    "tag"
);

/// The path of an array inside a repo, e.g. `/temperature`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct ArrayPath(String);

impl TryFrom<String> for ArrayPath {
    type Error = FloeError;
    fn try_from(path: String) -> Result<Self, FloeError> {
        Self::new(path)
    }
}

impl ArrayPath {
    /// Validates an array path: starts with `/`, then `/`-separated non-empty
    /// segments of `[A-Za-z0-9._-]`, at most 512 characters.
    pub fn new(path: impl Into<String>) -> Result<Self, FloeError> {
        let path = path.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let valid = path.len() <= 512
            && path.starts_with('/')
            && path[1..]
                .split('/')
                .all(|s| !s.is_empty() && s.chars().all(ok_char));
        if !valid {
            return Err(FloeError::InvalidName {
                what: "array path".into(),
                name: path.chars().take(512).collect(),
            });
        }
        Ok(Self(path))
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ArrayPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

int_id!(
    /// A commit, numbered per repo in landing order: `C0` is the root commit
    /// made when the repo is created.
    CommitId,
    "C"
);
int_id!(
    /// A cooperative session, numbered cluster-wide.
    SessionId,
    "S"
);
int_id!(
    /// A client of the coordinator (writer, worker or tool); chosen by the
    /// client, at random, once per process.
    ClientId,
    "client-"
);
int_id!(
    /// A worker taking part in cooperative sessions.
    WorkerId,
    "W"
);

/// A task of a cooperative plan: its index in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}", self.0)
    }
}

/// The key of an immutable object in the store (chunk, manifest,
/// checkpoint): 128 random bits, printed as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectId(pub u128);

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl std::str::FromStr for ObjectId {
    type Err = FloeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(FloeError::InvalidName {
                what: "object id".into(),
                name: s.chars().take(64).collect(),
            });
        }
        u128::from_str_radix(s, 16)
            .map(ObjectId)
            .map_err(|_| FloeError::InvalidName {
                what: "object id".into(),
                name: s.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(RepoName::new("weather-2024.v1").is_ok());
        assert!(RepoName::new("").is_err());
        assert!(BranchName::new("a/b").is_err());
        assert!(TagName::new("x".repeat(129)).is_err());
        assert!(ArrayPath::new("/temperature").is_ok());
        assert!(ArrayPath::new("/group/t2m").is_ok());
        assert!(ArrayPath::new("temperature").is_err());
        assert!(ArrayPath::new("/a//b").is_err());
        assert!(ArrayPath::new("/").is_err());
    }

    #[test]
    fn object_ids_round_trip_through_hex() {
        let id = ObjectId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let text = id.to_string();
        assert_eq!(text, "0123456789abcdef0011223344556677");
        assert_eq!(text.parse::<ObjectId>().ok(), Some(id));
        assert!("xyz".parse::<ObjectId>().is_err());
    }

    #[test]
    fn names_are_validated_when_decoded_from_the_wire() {
        let bad = crate::codec::encode(&"a/b".to_string()).unwrap();
        assert!(crate::codec::decode::<BranchName>(&bad).is_err());
        let good = crate::codec::encode(&"main".to_string()).unwrap();
        assert_eq!(
            crate::codec::decode::<BranchName>(&good).ok(),
            BranchName::new("main").ok()
        );
        let path = crate::codec::encode(&"no-slash".to_string()).unwrap();
        assert!(crate::codec::decode::<ArrayPath>(&path).is_err());
    }

    #[test]
    fn commit_ids_print_like_the_seed() {
        assert_eq!(CommitId(3).to_string(), "C3");
    }
}
