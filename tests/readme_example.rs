//! The README's library example, kept compiling and passing.

use std::sync::Arc;

use floe_coordinator::{Config, EmbeddedCluster};
use floe_protocol::*;
use floe_worker::{ArrayData, Session, Store};

async fn demo(dir: &std::path::Path) -> anyhow::Result<CommitId> {
    let coord = Arc::new(EmbeddedCluster::start(3, Config::default())?);
    let store = Store::from_url(&format!("file://{}", dir.display()))?;
    let repo = RepoName::new("weather")?;
    floe_worker::client::call(
        &coord,
        Request::Command(Command::CreateRepo { repo: repo.clone() }),
    )
    .await?;

    let main = BranchName::new("main")?;
    let mut s = Session::checkout(coord.clone(), store.clone(), repo.clone(), main).await?;
    let t = ArrayPath::new("/t")?;
    s.create_array(&t, ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0)?)?;
    s.write_region(
        &t,
        &"0:20".parse()?,
        &ArrayData::from_slice(&[20], &[7i32; 20])?,
    )
    .await?;
    let c = s
        .commit(
            "first write",
            CommitMode::Rebase {
                solver: Solver::Fail,
            },
        )
        .await?;
    let back = s
        .read_region(&t, &"15:25".parse()?)
        .await?
        .to_vec::<i32>()?;
    assert_eq!(back, [7, 7, 7, 7, 7, 0, 0, 0, 0, 0]);
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(demo(dir.path()).await.unwrap(), CommitId(1));
}
