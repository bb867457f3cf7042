//! The local cloud: what AWS would run, run on this machine, behind the same APIs.
//!
//! moto (the emulator) stores state and answers every control-plane call but runs nothing.
//! This crate is the front door in front of it: one loopback port that every SDK client of
//! the deployer and the handlers reaches through `AWS_ENDPOINT_URL`. Most requests pass
//! through to moto unchanged; the ones that must *do* something are served here: S3 writes
//! emit EventBridge events, `PutEvents` and schedules deliver to the stack's rules, Lambda
//! functions run as real processes from their uploaded zips, SageMaker training jobs and
//! endpoints run the model binary, SNS email lands in an outbox, and the stack's REST API is
//! served on a second port. Mutating calls are recorded so moto's in-memory state comes back
//! after a restart.

pub mod apigw;
pub mod authorizer;
pub mod bus;
pub mod cloud;
pub mod files;
pub mod front;
pub mod httpx;
pub mod lambda;
pub mod outbox;
pub mod pattern;
pub mod procs;
pub mod record;
pub mod s3events;
pub mod sagemaker;
pub mod schedule;

pub use cloud::{run, Config, RunInfo, RUN_FILE};

/// Errors that stop the local cloud from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("port {port} is already in use ({what}); stop what listens there, or leave the port unset to use a free one")]
    PortTaken { port: u16, what: &'static str },
    #[error("the model binary {path} does not exist; `deployer up` builds it (cargo build --release -p waste-model)")]
    ModelBinaryMissing { path: String },
    #[error("{path} is corrupt ({message}): it holds {holds}; restore it from a backup, or move it away to start without them")]
    Corrupt {
        path: String,
        message: String,
        holds: String,
    },
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
