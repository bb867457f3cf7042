//! The `on-training` function: a SageMaker Training Job State Change of this stack's jobs.
//! Completed → the model is staged with its metrics and the comparison is emailed;
//! Failed/Stopped → the reason is recorded and emailed. A repeated or late event changes nothing.

use pipeline_core::events::{self, Envelope, TrainingDetail};
use pipeline_core::pipeline::{Pipeline, PipelineError};
use pipeline_core::repo::ModelRecord;

pub async fn handle(
    p: &Pipeline,
    event: &serde_json::Value,
) -> Result<Option<ModelRecord>, PipelineError> {
    let e: Envelope<TrainingDetail> = events::parse(event, events::TRAINING_STATE_CHANGE)
        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
    p.on_training(&e.detail).await
}
