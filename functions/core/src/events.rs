//! The events that drive the pipeline, deserialized leniently (aws-contracts.md): unknown fields
//! are ignored; numbers may be integers or floats; times inside `detail` may be epoch
//! milliseconds as a string or a number (or ISO-8601); SageMaker's endpoint statuses come in
//! UPPER_SNAKE in events and CamelCase from DescribeEndpoint; S3 keys are URL-encoded in classic
//! notifications and raw in EventBridge events.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("event is not valid: {0}")]
    Invalid(String),
    #[error("unexpected event {source_name} / {detail_type}; this handler takes {expected}")]
    Unexpected {
        source_name: String,
        detail_type: String,
        expected: &'static str,
    },
}

/// The EventBridge envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<D> {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "detail-type", default)]
    pub detail_type: String,
    #[serde(default)]
    pub source: String,
    #[serde(default, deserialize_with = "lenient_time")]
    pub time: Option<OffsetDateTime>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: D,
}

/// A time as ISO-8601, or epoch milliseconds as a number or a string.
pub fn parse_time(v: &serde_json::Value) -> Option<OffsetDateTime> {
    let from_ms = |ms: f64| OffsetDateTime::from_unix_timestamp_nanos((ms * 1e6) as i128).ok();
    match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(from_ms),
        serde_json::Value::String(s) => match s.trim().parse::<f64>() {
            Ok(ms) => from_ms(ms),
            Err(_) => OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok(),
        },
        _ => None,
    }
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(parse_time(&v))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        serde_json::Value::String(s) => s.parse::<f64>().ok().map(|f| f as u64),
        _ => None,
    })
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct ModelArtifacts {
    #[serde(rename = "S3ModelArtifacts", default)]
    pub s3_model_artifacts: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct OutputDataConfig {
    #[serde(rename = "S3OutputPath", default)]
    pub s3_output_path: Option<String>,
}

/// `SageMaker Training Job State Change` detail.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainingDetail {
    #[serde(rename = "TrainingJobName")]
    pub name: String,
    #[serde(rename = "TrainingJobArn", default)]
    pub arn: Option<String>,
    #[serde(rename = "TrainingJobStatus")]
    pub status: String,
    #[serde(rename = "SecondaryStatus", default)]
    pub secondary_status: Option<String>,
    #[serde(rename = "FailureReason", default)]
    pub failure_reason: Option<String>,
    #[serde(rename = "ModelArtifacts", default)]
    pub model_artifacts: ModelArtifacts,
    #[serde(rename = "OutputDataConfig", default)]
    pub output: OutputDataConfig,
    #[serde(rename = "HyperParameters", default)]
    pub hyperparameters: BTreeMap<String, String>,
    /// A map in events, a list of {Key, Value} in DescribeTrainingJob: both accepted.
    #[serde(rename = "Tags", default, deserialize_with = "tags")]
    pub tags: BTreeMap<String, String>,
    #[serde(rename = "TrainingEndTime", default, deserialize_with = "lenient_time")]
    pub end_time: Option<OffsetDateTime>,
    #[serde(
        rename = "LastModifiedTime",
        default,
        deserialize_with = "lenient_time"
    )]
    pub last_modified: Option<OffsetDateTime>,
    #[serde(
        rename = "BillableTimeInSeconds",
        default,
        deserialize_with = "lenient_u64"
    )]
    pub billable_seconds: Option<u64>,
}

fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let mut out = BTreeMap::new();
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.insert(
                    k,
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        serde_json::Value::Array(items) => {
            for t in items {
                if let (Some(k), Some(v)) = (t["Key"].as_str(), t["Value"].as_str()) {
                    out.insert(k.to_string(), v.to_string());
                }
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Training job statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingStatus {
    InProgress,
    Completed,
    Failed,
    Stopping,
    Stopped,
}

impl TrainingDetail {
    pub fn status(&self) -> Option<TrainingStatus> {
        Some(match normalize(&self.status).as_str() {
            "inprogress" => TrainingStatus::InProgress,
            "completed" => TrainingStatus::Completed,
            "failed" => TrainingStatus::Failed,
            "stopping" => TrainingStatus::Stopping,
            "stopped" => TrainingStatus::Stopped,
            _ => return None,
        })
    }
}

/// `SageMaker Endpoint State Change` detail.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointDetail {
    #[serde(rename = "EndpointName")]
    pub name: String,
    #[serde(rename = "EndpointArn", default)]
    pub arn: Option<String>,
    #[serde(rename = "EndpointConfigName", default)]
    pub config_name: Option<String>,
    #[serde(rename = "EndpointStatus")]
    pub status: String,
    #[serde(rename = "FailureReason", default)]
    pub failure_reason: Option<String>,
    #[serde(
        rename = "LastModifiedTime",
        default,
        deserialize_with = "lenient_time"
    )]
    pub last_modified: Option<OffsetDateTime>,
}

/// Endpoint statuses, whichever casing they came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    OutOfService,
    Creating,
    Updating,
    SystemUpdating,
    RollingBack,
    InService,
    Deleting,
    Failed,
    UpdateRollbackFailed,
}

/// `IN_SERVICE`, `InService` and `in-service` all become `inservice`.
fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

pub fn endpoint_status(s: &str) -> Option<EndpointStatus> {
    use EndpointStatus::*;
    Some(match normalize(s).as_str() {
        "outofservice" => OutOfService,
        "creating" => Creating,
        "updating" => Updating,
        "systemupdating" => SystemUpdating,
        "rollingback" => RollingBack,
        "inservice" => InService,
        "deleting" => Deleting,
        "failed" => Failed,
        "updaterollbackfailed" => UpdateRollbackFailed,
        _ => return None,
    })
}

impl EndpointDetail {
    pub fn status(&self) -> Option<EndpointStatus> {
        endpoint_status(&self.status)
    }
}

/// An S3 object that was created, from an EventBridge `Object Created` event or a classic S3
/// notification record.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectCreated {
    pub bucket: String,
    /// The real key (URL-decoding applied to classic notifications only).
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    pub sequencer: Option<String>,
}

impl ObjectCreated {
    /// Parses either shape; classic notifications may hold several records.
    pub fn from_value(v: &serde_json::Value) -> Result<Vec<ObjectCreated>, EventError> {
        if let Some(records) = v.get("Records").and_then(|r| r.as_array()) {
            return records
                .iter()
                .map(|r| {
                    let s3 = &r["s3"];
                    Ok(ObjectCreated {
                        bucket: s3["bucket"]["name"]
                            .as_str()
                            .ok_or_else(|| {
                                EventError::Invalid("record without s3.bucket.name".into())
                            })?
                            .to_string(),
                        key: url_decode(s3["object"]["key"].as_str().ok_or_else(|| {
                            EventError::Invalid("record without s3.object.key".into())
                        })?),
                        etag: s3["object"]["eTag"].as_str().map(str::to_string),
                        version_id: s3["object"]["versionId"].as_str().map(str::to_string),
                        size: s3["object"]["size"].as_u64(),
                        sequencer: s3["object"]["sequencer"].as_str().map(str::to_string),
                    })
                })
                .collect();
        }
        let source = v["source"].as_str().unwrap_or_default();
        let detail_type = v["detail-type"].as_str().unwrap_or_default();
        if source != "aws.s3" || detail_type != "Object Created" {
            return Err(EventError::Unexpected {
                source_name: source.into(),
                detail_type: detail_type.into(),
                expected: "aws.s3 / Object Created",
            });
        }
        let d = &v["detail"];
        Ok(vec![ObjectCreated {
            bucket: d["bucket"]["name"]
                .as_str()
                .ok_or_else(|| EventError::Invalid("detail.bucket.name missing".into()))?
                .to_string(),
            key: d["object"]["key"]
                .as_str()
                .ok_or_else(|| EventError::Invalid("detail.object.key missing".into()))?
                .to_string(),
            etag: d["object"]["etag"].as_str().map(str::to_string),
            version_id: d["object"]["version-id"].as_str().map(str::to_string),
            size: d["object"]["size"]
                .as_u64()
                .or_else(|| d["object"]["size"].as_f64().map(|f| f as u64)),
            sequencer: d["object"]["sequencer"].as_str().map(str::to_string),
        }])
    }

    /// The data set prefix (`datasets/<stamp>`) when this is a dataset's `_READY` marker.
    pub fn dataset_prefix(&self) -> Option<&str> {
        let prefix = self.key.strip_suffix("/_READY")?;
        (prefix.starts_with("datasets/")
            && prefix.len() > "datasets/".len()
            && !prefix[9..].contains('/'))
        .then_some(prefix)
    }
}

/// Decodes S3's classic-notification key encoding (`+` for space, `%XX`).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                // Bytes, not a str slice: a multi-byte character after '%' must not panic.
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses an EventBridge event of the expected kind.
pub fn parse<D: for<'de> Deserialize<'de>>(
    v: &serde_json::Value,
    detail_type: &'static str,
) -> Result<Envelope<D>, EventError> {
    let got = v["detail-type"].as_str().unwrap_or_default();
    if got != detail_type {
        return Err(EventError::Unexpected {
            source_name: v["source"].as_str().unwrap_or_default().into(),
            detail_type: got.into(),
            expected: detail_type,
        });
    }
    serde_json::from_value(v.clone()).map_err(|e| EventError::Invalid(e.to_string()))
}

pub const TRAINING_STATE_CHANGE: &str = "SageMaker Training Job State Change";
pub const ENDPOINT_STATE_CHANGE: &str = "SageMaker Endpoint State Change";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn training(status: &str, end: serde_json::Value) -> serde_json::Value {
        json!({
            "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
            "account": "123456789012", "time": "2026-11-28T12:00:05Z", "region": "us-east-1",
            "resources": ["arn:aws:sagemaker:us-east-1:123456789012:training-job/wastesort-local-x"],
            "detail": {
                "TrainingJobName": "wastesort-local-20261128T120000Z-1a2b3c4d",
                "TrainingJobStatus": status, "SecondaryStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/training-output/j/output/model.tar.gz"},
                "HyperParameters": {"epochs": "3"},
                "Tags": {"app": "wastesort", "model": "m-1"},
                "TrainingEndTime": end, "LastModifiedTime": 1795867205123.0,
                "BillableTimeInSeconds": "42", "SomethingNew": {"x": 1}
            }
        })
    }

    #[test]
    fn training_events_with_every_time_form() {
        for end in [
            json!(1795867205000u64),
            json!("1795867205000"),
            json!("2026-11-28T12:00:05Z"),
        ] {
            let e: Envelope<TrainingDetail> =
                parse(&training("Completed", end.clone()), TRAINING_STATE_CHANGE).unwrap();
            assert_eq!(e.detail.status(), Some(TrainingStatus::Completed));
            assert!(e.detail.end_time.is_some(), "{end}");
            assert_eq!(e.time.unwrap().unix_timestamp(), 1795867205);
            assert_eq!(e.detail.tags["model"], "m-1");
            assert_eq!(e.detail.billable_seconds, Some(42));
        }
        let mut v = training("Failed", json!(null));
        v["detail"]["FailureReason"] = json!("AlgorithmError: class O is empty");
        v["detail"]["Tags"] = json!([{"Key": "model", "Value": "m-2"}]);
        let e: Envelope<TrainingDetail> = parse(&v, TRAINING_STATE_CHANGE).unwrap();
        assert_eq!(e.detail.status(), Some(TrainingStatus::Failed));
        assert_eq!(e.detail.tags["model"], "m-2", "list-form tags");
        let err = parse::<TrainingDetail>(&v, ENDPOINT_STATE_CHANGE).unwrap_err();
        assert!(err
            .to_string()
            .contains("this handler takes SageMaker Endpoint State Change"));
    }

    #[test]
    fn endpoint_status_in_either_casing() {
        assert_eq!(
            endpoint_status("IN_SERVICE"),
            Some(EndpointStatus::InService)
        );
        assert_eq!(
            endpoint_status("InService"),
            Some(EndpointStatus::InService)
        );
        assert_eq!(
            endpoint_status("UPDATE_ROLLBACK_FAILED"),
            Some(EndpointStatus::UpdateRollbackFailed)
        );
        assert_eq!(endpoint_status("Bogus"), None);
        let v = json!({"detail-type": "SageMaker Endpoint State Change", "source": "aws.sagemaker", "time": "2026-11-28T12:00:05Z",
            "detail": {"EndpointName": "wastesort-local-endpoint", "EndpointConfigName": "c-2", "EndpointStatus": "IN_SERVICE", "LastModifiedTime": "1795867205000", "Tags": {}}});
        let e: Envelope<EndpointDetail> = parse(&v, ENDPOINT_STATE_CHANGE).unwrap();
        assert_eq!(e.detail.status(), Some(EndpointStatus::InService));
        assert_eq!(e.detail.config_name.as_deref(), Some("c-2"));
    }

    #[test]
    fn object_created_keys_with_spaces_both_ways() {
        let eb = json!({"source": "aws.s3", "detail-type": "Object Created", "time": "2026-11-28T12:00:00Z",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "datasets/2026 run/_READY", "size": 120, "etag": "abc", "sequencer": "00A", "version-id": "v1"}, "reason": "PutObject"}});
        let o = &ObjectCreated::from_value(&eb).unwrap()[0];
        assert_eq!(
            o.key, "datasets/2026 run/_READY",
            "EventBridge keys are raw"
        );
        assert_eq!(o.dataset_prefix(), Some("datasets/2026 run"));
        assert_eq!(
            (o.size, o.etag.as_deref(), o.version_id.as_deref()),
            (Some(120), Some("abc"), Some("v1"))
        );
        let classic = json!({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "datasets/2026+run%2Fx/_READY", "eTag": "e"}}}]});
        let o = &ObjectCreated::from_value(&classic).unwrap()[0];
        assert_eq!(
            o.key, "datasets/2026 run/x/_READY",
            "classic keys are URL-decoded"
        );
        assert_eq!(
            o.dataset_prefix(),
            None,
            "only datasets/<name>/_READY is a marker"
        );
        let image = ObjectCreated {
            key: "datasets/a/train/O/x.jpg".into(),
            ..o.clone()
        };
        assert_eq!(image.dataset_prefix(), None, "an image is not a trigger");
    }

    #[test]
    fn url_decoding_edge_cases() {
        assert_eq!(url_decode("a%20b+c"), "a b c");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
        assert_eq!(url_decode("caf%C3%A9"), "café");
        assert_eq!(
            url_decode("%é1"),
            "%é1",
            "no panic on a multi-byte character"
        );
    }
}
