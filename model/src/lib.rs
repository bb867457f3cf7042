//! The waste classifier: a small CNN trained and served in pure Rust on SageMaker's container
//! contract (`train`, `serve`), plus the tools around it (synthetic data, evaluation, benchmarks).
//! The command line lives in the binary (`src/cli.rs`); everything here returns typed errors.

pub mod artifact;
pub mod baseline;
pub mod bench;
pub mod bn;
pub mod data;
pub mod direct;
pub mod effnet;
pub mod hparams;
pub mod imageio;
pub mod metrics;
pub mod nn;
pub mod rng;
pub mod serve;
pub mod synth;
pub mod train;
pub mod transfer;
