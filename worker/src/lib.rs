//! floe-worker: the data plane. The repository format on object storage,
//! writer sessions (checkout, write, read, commit) and cooperative workers.

#![warn(missing_docs)]
