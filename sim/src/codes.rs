//! Small integer codes for requests and outcomes, so the trace can record
//! them per event without formatting strings.

use floe_protocol::{Command, FloeError, Outcome, Query, Reply, Request};

/// The index of a request's kind in [`crate::trace::REQUESTS`].
pub fn request(r: &Request) -> u64 {
    match r {
        Request::Command(c) => match c {
            Command::CreateRepo { .. } => 0,
            Command::CreateBranch { .. } => 1,
            Command::CreateTag { .. } => 2,
            Command::Commit(_) => 3,
            Command::OpenSession { .. } => 4,
            Command::ClaimTask { .. } => 5,
            Command::RenewLease { .. } => 6,
            Command::CompleteTask { .. } => 7,
            Command::Contribute { .. } => 8,
            Command::CommitSession { .. } => 9,
            Command::AbortSession { .. } => 10,
            Command::RecordCheckpoint { .. } => 11,
            Command::OpenClient => 19,
            Command::ChangeMembers(_) => 20,
        },
        Request::Query(q) => match q {
            Query::Checkout { .. } => 12,
            Query::ResolveTag { .. } => 13,
            Query::GetCommit { .. } => 14,
            Query::Log { .. } => 15,
            Query::CanFastForward { .. } => 16,
            Query::Session { .. } => 17,
            Query::Refs { .. } => 18,
            Query::OpenSessions => 21,
        },
    }
}

const REPLIES: [&str; 15] = [
    "RepoCreated",
    "Done",
    "Committed",
    "SessionOpened",
    "TaskGranted",
    "NoTask",
    "LeaseRenewed",
    "Accepted",
    "Commit",
    "Log",
    "FastForward",
    "Session",
    "Refs",
    "OpenSessions",
    "AcceptedNext",
];

const ERRORS: [&str; 33] = [
    "InvalidName",
    "Geometry",
    "DTypeMismatch",
    "UnknownRepo",
    "RepoExists",
    "UnknownBranch",
    "BranchExists",
    "UnknownTag",
    "TagExists",
    "UnknownCommit",
    "UnknownArray",
    "OutOfDate",
    "Conflict",
    "BaseTooOld",
    "BaseNotOnBranch",
    "InvalidChange",
    "InvalidPlan",
    "UnknownSession",
    "SessionClosed",
    "UnknownTask",
    "StaleEpoch",
    "FootprintOutsideTask",
    "SessionIncomplete",
    "OverlappingContribution",
    "NotLeader",
    "SeqTooOld",
    "Codec",
    "Store",
    "Unavailable",
    "StoreUnavailable",
    "CheckpointExists",
    "SessionExpired",
    "BadMemberChange",
];

/// A code for an outcome: replies below 100, errors from 100 on.
pub fn outcome(o: &Outcome) -> u64 {
    match o {
        Ok(r) => reply(r),
        Err(e) => 100 + error(e),
    }
}

fn reply(r: &Reply) -> u64 {
    match r {
        Reply::RepoCreated { .. } => 0,
        Reply::Done => 1,
        Reply::Committed { .. } => 2,
        Reply::SessionOpened { .. } => 3,
        Reply::TaskGranted { .. } => 4,
        Reply::NoTask { .. } => 5,
        Reply::LeaseRenewed { .. } => 6,
        Reply::Accepted { .. } => 7,
        Reply::Commit(_) => 8,
        Reply::Log(_) => 9,
        Reply::FastForward { .. } => 10,
        Reply::Session(_) => 11,
        Reply::Refs { .. } => 12,
        Reply::OpenSessions(_) => 13,
        Reply::AcceptedNext { .. } => 14,
    }
}

fn error(e: &FloeError) -> u64 {
    use FloeError::*;
    match e {
        InvalidName { .. } => 0,
        Geometry { .. } => 1,
        DTypeMismatch { .. } => 2,
        UnknownRepo { .. } => 3,
        RepoExists { .. } => 4,
        UnknownBranch { .. } => 5,
        BranchExists { .. } => 6,
        UnknownTag { .. } => 7,
        TagExists { .. } => 8,
        UnknownCommit { .. } => 9,
        UnknownArray { .. } => 10,
        OutOfDate { .. } => 11,
        Conflict { .. } => 12,
        BaseTooOld { .. } => 13,
        BaseNotOnBranch { .. } => 14,
        InvalidChange { .. } => 15,
        InvalidPlan { .. } => 16,
        UnknownSession { .. } => 17,
        SessionClosed { .. } => 18,
        UnknownTask { .. } => 19,
        StaleEpoch { .. } => 20,
        FootprintOutsideTask { .. } => 21,
        SessionIncomplete { .. } => 22,
        OverlappingContribution { .. } => 23,
        NotLeader { .. } => 24,
        SeqTooOld { .. } => 25,
        Codec(_) => 26,
        Store(_) => 27,
        Unavailable(_) => 28,
        StoreUnavailable(_) => 29,
        CheckpointExists { .. } => 30,
        SessionExpired { .. } => 31,
        BadMemberChange { .. } => 32,
    }
}

/// The name of an outcome code.
pub fn outcome_name(code: u64) -> &'static str {
    let pick = |table: &[&'static str], i: u64| *table.get(i as usize).unwrap_or(&"?");
    if code >= 100 {
        pick(&ERRORS, code - 100)
    } else {
        pick(&REPLIES, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_name_their_outcomes() {
        let o: Outcome = Err(FloeError::Unavailable("x".into()));
        assert_eq!(outcome_name(outcome(&o)), "Unavailable");
        assert_eq!(outcome_name(outcome(&Ok(Reply::Done))), "Done");
    }
}
