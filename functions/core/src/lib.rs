//! The pipeline's domain, free of Lambda plumbing: how a model version moves through its states
//! ([`status`]), what its metrics are and how a staged model compares with the deployed one
//! ([`metrics`]), the shapes of the events that drive it ([`events`]), the emails it sends
//! ([`notify`]), what it asks SageMaker for ([`specs`]), and where it is all stored
//! ([`repo`], DynamoDB with conditional writes).

pub mod events;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod repo;
pub mod settings;
pub mod specs;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
