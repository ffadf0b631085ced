//! floe-worker: the data plane. The repository format on object storage,
//! writer sessions (checkout, write, read, commit) and cooperative workers.
//!
//! Pure modules (no IO, deterministic, reusable by the simulation):
//! [`format`] (object keys and encodings), [`data`] (typed buffers),
//! [`chunk`] (building and reading chunk buffers), [`resolve`] (which
//! object holds a chunk at a commit), [`zarr`] (Zarr v3 metadata and chunk
//! keys for exports) and the per-task decisions in [`coop`]. Thin async shells around them: [`store`] (object_store),
//! [`session`] (a writer's session against a [`floe_protocol::Coordinator`])
//! and [`coop::run_plan`] (cooperative workers). [`npy`] reads and writes
//! NumPy files; [`source`] opens a job's source for its workers (an `.npy`,
//! or a Zarr hierarchy through [`zarr_source`]).

#![warn(missing_docs)]

pub mod chunk;
pub mod client;
pub mod coop;
pub mod data;
pub mod driver;
pub mod format;
pub mod machine;
pub mod npy;
pub mod planless;
pub mod resolve;
pub mod session;
pub mod source;
pub mod store;
pub mod zarr;
pub mod zarr_source;

pub use client::Client;
pub use coop::{
    plan_grid, run_plan, CoopEvent, CoopOptions, CoopReport, Source, Synthetic, Tiling,
};
pub use data::{ArrayData, Element};
pub use driver::{drive, Driven};
pub use format::Manifest;
pub use machine::SeedStep;
pub use npy::{write_npy, NpyFile};
pub use planless::Planless;
pub use session::{read_at, FastForward, Reader, SeedLoop, Session};
pub use store::Store;
