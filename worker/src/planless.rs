//! Planless cooperative mode: a session opened without a plan, to which
//! any number of independent writers contribute chunks (each contribution
//! its own [`ContributeTask`] machine, run by the driver), committed as one
//! commit. Contributions that share a chunk with an earlier one are refused
//! with `OverlappingContribution` naming the chunks; nothing of them lands.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, Coordinator, FloeError,
    Region, Reply, RepoName, SessionId, WorkerId,
};

use crate::client::Client;
use crate::data::ArrayData;
use crate::driver::drive;
use crate::machine::{ContributeTask, ContributeTo};
use crate::resolve::History;
use crate::session::unexpected;
use crate::store::Store;

/// An open planless session (see the module docs).
pub struct Planless<C: Coordinator> {
    client: Client<C>,
    store: Store,
    repo: RepoName,
    session: SessionId,
    base: CommitId,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
}

impl<C: Coordinator + 'static> Planless<C> {
    /// Opens a planless session on `branch` of `repo`.
    pub async fn open(
        coord: Arc<C>,
        store: Store,
        repo: RepoName,
        branch: BranchName,
    ) -> Result<Self, FloeError> {
        let client = Client::new(coord);
        let open = Command::OpenSession {
            repo: repo.clone(),
            branch,
            plan: None,
            lease_ms: 10_000,
            source: None,
            create: Default::default(),
        };
        match client.command(open).await? {
            Reply::SessionOpened {
                session,
                base,
                arrays,
            } => Ok(Planless {
                client,
                store,
                repo,
                session,
                base,
                arrays,
            }),
            other => Err(unexpected("OpenSession", &other)),
        }
    }

    /// The session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The arrays of the session's base.
    pub fn arrays(&self) -> &BTreeMap<ArrayPath, ArrayMeta> {
        &self.arrays
    }

    /// Writes `writes` (regions of the base's arrays with their data; a
    /// partial chunk keeps the base's other elements) and contributes them
    /// as `worker`. Contributions may run concurrently.
    pub async fn contribute(
        &self,
        worker: WorkerId,
        writes: Vec<(ArrayPath, Region, ArrayData)>,
    ) -> Result<(), FloeError> {
        let to = ContributeTo {
            repo: self.repo.clone(),
            session: self.session,
            worker,
            base: self.base,
            arrays: self.arrays.clone(),
        };
        // A fetch per commit on the base's chain at most, and the contribution.
        let caller = self.client.caller(self.base.0 + 3);
        let task = ContributeTask::new(caller, rand::random(), to, writes, History::new());
        let coord = self.client.coordinator().clone();
        let task = drive(task, coord, Some(self.store.clone())).await?;
        self.client.learn(task.requester());
        match task.outcome() {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.clone()),
            None => Err(FloeError::Unavailable(
                "the contribution did not finish".into(),
            )),
        }
    }

    /// Commits every accepted contribution as one commit.
    pub async fn commit(&self, message: &str, mode: CommitMode) -> Result<CommitId, FloeError> {
        let cmd = Command::CommitSession {
            session: self.session,
            message: message.to_string(),
            author: "floe".into(),
            mode,
        };
        match self.client.command(cmd).await? {
            Reply::Committed { commit, .. } => Ok(commit),
            other => Err(unexpected("CommitSession", &other)),
        }
    }

    /// Gives the session up: nothing of it lands.
    pub async fn abort(&self) -> Result<(), FloeError> {
        match self
            .client
            .command(Command::AbortSession {
                session: self.session,
            })
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(unexpected("AbortSession", &other)),
        }
    }
}
