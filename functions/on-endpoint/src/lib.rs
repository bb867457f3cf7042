//! The `on-endpoint` function: a SageMaker Endpoint State Change of this stack's endpoint.
//! InService on the deployed config with no FailureReason → the model is deployed (the previous
//! one superseded, kept for rollback) and emailed; Failed, or an update that fell back → the model
//! is deploy_failed, the old one keeps serving, and that is emailed.

use pipeline_core::events::{self, EndpointDetail, Envelope};
use pipeline_core::pipeline::{Pipeline, PipelineError};
use pipeline_core::repo::ModelRecord;

pub async fn handle(
    p: &Pipeline,
    event: &serde_json::Value,
) -> Result<Option<ModelRecord>, PipelineError> {
    let e: Envelope<EndpointDetail> = events::parse(event, events::ENDPOINT_STATE_CHANGE)
        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
    if e.detail.name != p.settings.endpoint_name {
        return Ok(None); // another stack's endpoint: not ours to judge
    }
    p.on_endpoint(&e.detail).await
}
