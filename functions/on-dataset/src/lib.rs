//! The `on-dataset` function: an S3 `Object Created` event for a data set's `_READY` marker
//! starts one training run on that data set (images never do: the rule matches the marker, and
//! this handler checks again); a `Scheduled Event` from the retraining rule starts one on the
//! newest data set.

use pipeline_core::events::ObjectCreated;
use pipeline_core::pipeline::{Pipeline, PipelineError, Started};

/// Handles one EventBridge event; returns the runs it started (or found already started).
pub async fn handle(
    p: &Pipeline,
    event: &serde_json::Value,
) -> Result<Vec<Started>, PipelineError> {
    if event["detail-type"] == "Scheduled Event" {
        let Some((dataset, etag)) = p.latest_dataset().await? else {
            return Ok(vec![]); // nothing pushed yet: nothing to retrain on
        };
        // The schedule's time joins the trigger: each period retrains once, a retried delivery
        // of the same period does not.
        let when = event["time"].as_str().unwrap_or_default();
        return Ok(vec![
            p.start_training(&dataset, &format!("{etag}@{when}"))
                .await?,
        ]);
    }
    let objects =
        ObjectCreated::from_value(event).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let mut started = Vec::new();
    for o in objects
        .iter()
        .filter(|o| o.bucket == p.settings.data_bucket)
    {
        if let Some(dataset) = o.dataset_prefix() {
            let trigger = o
                .etag
                .clone()
                .or_else(|| o.version_id.clone())
                .unwrap_or_default();
            started.push(p.start_training(dataset, &trigger).await?);
        }
    }
    Ok(started)
}
