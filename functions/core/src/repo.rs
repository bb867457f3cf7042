//! The pipeline's records in DynamoDB, with every state change a conditional write: a model moves
//! only from the state the caller saw, so duplicate or out-of-order events change nothing the
//! second time and two concurrent decisions cannot both win.
//!
//! Models table: `pk = "MODEL"`, `sk = <model id>`. Jobs table: `pk = "TRAINING"`,
//! `sk = <job name>` for training runs. Metrics and counts are stored as DynamoDB numbers,
//! timestamps as ISO-8601 strings.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::Serialize;

use crate::metrics::{ConfusionMatrix, Metrics};
use crate::status::ModelStatus;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("model {id} is {current}, not {expected}")]
    Conflict {
        id: String,
        expected: String,
        current: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("failed to {action}: {message}")]
    Dynamo {
        action: &'static str,
        message: String,
    },
    #[error("stored item {id} is malformed: {what}")]
    Malformed { id: String, what: String },
}

/// Who decided what, when and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub action: String,
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// One model version with its lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRecord {
    pub id: String,
    pub status: ModelStatus,
    pub created_at: String,
    pub updated_at: String,
    /// Lineage: data set prefix and the trigger object's etag → training job → artifact →
    /// endpoint config.
    pub dataset: String,
    pub dataset_etag: Option<String>,
    pub training_job: String,
    pub model_artifact: Option<String>,
    pub endpoint_config: Option<String>,
    pub metrics: Option<Metrics>,
    pub failure_reason: Option<String>,
    pub decisions: Vec<Decision>,
}

/// What a transition changes besides the status.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub metrics: Option<Metrics>,
    pub model_artifact: Option<String>,
    pub endpoint_config: Option<String>,
    pub failure_reason: Option<String>,
    pub decision: Option<Decision>,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn metrics_av(m: &Metrics) -> AttributeValue {
    let cm = HashMap::from([
        ("tp".to_string(), n(m.confusion_matrix.tp)),
        ("tn".to_string(), n(m.confusion_matrix.tn)),
        ("fp".to_string(), n(m.confusion_matrix.fp)),
        ("fn".to_string(), n(m.confusion_matrix.fn_)),
    ]);
    let mut map = HashMap::from([
        ("accuracy".to_string(), n(m.accuracy)),
        ("precision".to_string(), n(m.precision)),
        ("recall".to_string(), n(m.recall)),
        ("f1".to_string(), n(m.f1)),
        ("auc_roc".to_string(), n(m.auc_roc)),
        ("loss".to_string(), n(m.loss)),
        ("support".to_string(), n(m.support)),
        ("confusion_matrix".to_string(), AttributeValue::M(cm)),
    ]);
    if let Some(p) = &m.positive_class {
        map.insert("positive_class".into(), s(p));
    }
    if let Some(d) = &m.dataset {
        map.insert("dataset".into(), s(&d.to_string()));
    }
    AttributeValue::M(map)
}

fn num(map: &HashMap<String, AttributeValue>, k: &str) -> Option<f64> {
    map.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|x| x.parse().ok())
}

fn metrics_from(av: &AttributeValue) -> Option<Metrics> {
    let m = av.as_m().ok()?;
    let cm = m.get("confusion_matrix")?.as_m().ok()?;
    Some(Metrics {
        accuracy: num(m, "accuracy")?,
        precision: num(m, "precision")?,
        recall: num(m, "recall")?,
        f1: num(m, "f1")?,
        auc_roc: num(m, "auc_roc")?,
        loss: num(m, "loss")?,
        support: num(m, "support")? as u64,
        confusion_matrix: ConfusionMatrix {
            tp: num(cm, "tp")? as u64,
            tn: num(cm, "tn")? as u64,
            fp: num(cm, "fp")? as u64,
            fn_: num(cm, "fn")? as u64,
        },
        positive_class: m.get("positive_class").and_then(|v| v.as_s().ok()).cloned(),
        dataset: m
            .get("dataset")
            .and_then(|v| v.as_s().ok())
            .and_then(|t| serde_json::from_str(t).ok()),
    })
}

fn decision_av(d: &Decision) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("action".to_string(), s(&d.action)),
        ("by".to_string(), s(&d.by)),
        ("at".to_string(), s(&d.at)),
        ("reason".to_string(), s(&d.reason)),
    ]))
}

fn text(item: &HashMap<String, AttributeValue>, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn model_from(item: &HashMap<String, AttributeValue>) -> Result<ModelRecord, RepoError> {
    let id = text(item, "sk").unwrap_or_default();
    let bad = |what: &str| RepoError::Malformed {
        id: id.clone(),
        what: what.into(),
    };
    let status = text(item, "status")
        .and_then(|st| ModelStatus::parse(&st))
        .ok_or_else(|| bad("status"))?;
    let decisions = item
        .get("decisions")
        .and_then(|v| v.as_l().ok())
        .map(|l| {
            l.iter()
                .filter_map(|d| d.as_m().ok())
                .map(|d| Decision {
                    action: text(d, "action").unwrap_or_default(),
                    by: text(d, "by").unwrap_or_default(),
                    at: text(d, "at").unwrap_or_default(),
                    reason: text(d, "reason").unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(ModelRecord {
        status,
        created_at: text(item, "created_at").ok_or_else(|| bad("created_at"))?,
        updated_at: text(item, "updated_at").unwrap_or_default(),
        dataset: text(item, "dataset").unwrap_or_default(),
        dataset_etag: text(item, "dataset_etag"),
        training_job: text(item, "training_job").unwrap_or_default(),
        model_artifact: text(item, "model_artifact"),
        endpoint_config: text(item, "endpoint_config"),
        metrics: item.get("metrics").and_then(metrics_from),
        failure_reason: text(item, "failure_reason"),
        decisions,
        id,
    })
}

fn dynamo<E: ProvideErrorMetadata + std::fmt::Display>(action: &'static str, e: &E) -> RepoError {
    RepoError::Dynamo {
        action,
        message: match (e.code(), e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            _ => e.to_string(),
        },
    }
}

/// The repository over the two tables.
#[derive(Debug, Clone)]
pub struct Repo {
    pub client: Client,
    pub models_table: String,
    pub jobs_table: String,
    /// The model list as of a version of the models table (see [`Repo::list_models_cached`]).
    cache: std::sync::Arc<std::sync::Mutex<Option<CachedList>>>,
    /// Model writes through this repository so far: a list read before the latest of them
    /// is not served again (this process reads its own writes).
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// How long a checked list is served without asking the table again.
    list_fresh: std::time::Duration,
}

#[derive(Debug)]
struct CachedList {
    version: u64,
    /// [`Repo::writes`] when the version was read.
    writes: u64,
    /// When the list was read.
    at: std::time::Instant,
    /// When the table's version was last seen to equal `version`.
    checked: std::time::Instant,
    models: Vec<ModelRecord>,
}

const MODEL: &str = "MODEL";
/// A counter item beside the model records (its own partition, so listing never sees it):
/// every model write adds one, so a reader can tell with one GetItem whether its list is
/// still current.
const META: &str = "META";
const META_MODELS: &str = "models";
/// A cached list is re-read after this long even if the version did not move: the version
/// is bumped after a write, not in the same transaction, and a lost bump must not leave a
/// reader stale for longer.
const CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long [`Repo::list_models_cached`] serves a list it has checked against the table's
/// version without checking again. Writes through this repository (this process) make the
/// list stale at once; another handler's write (a model staged by `on_training`, deployed by
/// `on_endpoint`) shows in this process's list within this time. The check is a DynamoDB
/// round trip, and against the local emulator (which opens a new connection per call) it
/// was half of a `GET /api/models` (4.4 of 10.4 ms median): a dashboard or a client polling
/// faster than this pays it once per interval instead of on every request.
pub const LIST_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl Repo {
    pub fn new(
        client: Client,
        models_table: impl Into<String>,
        jobs_table: impl Into<String>,
    ) -> Self {
        Repo {
            client,
            models_table: models_table.into(),
            jobs_table: jobs_table.into(),
            cache: Default::default(),
            writes: Default::default(),
            list_fresh: LIST_FRESH,
        }
    }

    /// The same repository with another [`LIST_FRESH`] (zero: check the version on every
    /// list).
    pub fn with_list_freshness(mut self, fresh: std::time::Duration) -> Self {
        self.list_fresh = fresh;
        self
    }

    /// Adds one to the models table's version. Best effort: the write it follows has already
    /// succeeded, and [`CACHE_MAX_AGE`] bounds what a lost bump can cost.
    async fn bump(&self) {
        // This process reads its own writes: its cached list is read again on its next use.
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = self
            .client
            .update_item()
            .table_name(&self.models_table)
            .key("pk", s(META))
            .key("sk", s(META_MODELS))
            .update_expression("ADD #v :one")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .await;
    }

    /// The models table's version (0 before the first model write).
    pub async fn models_version(&self) -> Result<u64, RepoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.models_table)
            .key("pk", s(META))
            .key("sk", s(META_MODELS))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo("read the models version", &e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("v"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0))
    }

    /// Every model, newest first, as [`Repo::list_models`], but served from memory while the
    /// models table's version has not moved: one consistent GetItem instead of a Query of
    /// every record, for a dashboard that polls; and not even that within [`LIST_FRESH`] of
    /// the last check.
    pub async fn list_models_cached(&self) -> Result<Vec<ModelRecord>, RepoError> {
        use std::sync::atomic::Ordering;
        let writes = self.writes.load(Ordering::SeqCst);
        if let Ok(guard) = self.cache.lock() {
            if let Some(c) = guard.as_ref() {
                if c.writes == writes
                    && c.checked.elapsed() < self.list_fresh
                    && c.at.elapsed() < CACHE_MAX_AGE
                {
                    return Ok(c.models.clone());
                }
            }
        }
        let version = self.models_version().await?;
        if let Ok(mut guard) = self.cache.lock() {
            if let Some(c) = guard.as_mut() {
                // No write here since before the version was read (else read the list again).
                let unwritten = c.writes == writes && self.writes.load(Ordering::SeqCst) == writes;
                if unwritten && c.version == version && c.at.elapsed() < CACHE_MAX_AGE {
                    c.checked = std::time::Instant::now();
                    return Ok(c.models.clone());
                }
            }
        }
        // Read after the version: a write in between makes the list newer than its label,
        // and the next call, seeing a higher version, reads again.
        let models = self.list_models().await?;
        if let Ok(mut guard) = self.cache.lock() {
            let now = std::time::Instant::now();
            *guard = Some(CachedList {
                version,
                writes,
                at: now,
                checked: now,
                models: models.clone(),
            });
        }
        Ok(models)
    }

    /// Records a new model in `training`. Returns false (and changes nothing) if it exists,
    /// which is what a duplicate trigger event looks like.
    pub async fn create_model(&self, m: &ModelRecord) -> Result<bool, RepoError> {
        let mut item = HashMap::from([
            ("pk".to_string(), s(MODEL)),
            ("sk".to_string(), s(&m.id)),
            ("status".to_string(), s(m.status.as_str())),
            ("created_at".to_string(), s(&m.created_at)),
            ("updated_at".to_string(), s(&m.updated_at)),
            ("dataset".to_string(), s(&m.dataset)),
            ("training_job".to_string(), s(&m.training_job)),
            (
                "decisions".to_string(),
                AttributeValue::L(m.decisions.iter().map(decision_av).collect()),
            ),
        ]);
        if let Some(e) = &m.dataset_etag {
            item.insert("dataset_etag".into(), s(e));
        }
        if let Some(x) = &m.metrics {
            item.insert("metrics".into(), metrics_av(x));
        }
        let r = self
            .client
            .put_item()
            .table_name(&self.models_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match r {
            Ok(_) => {
                self.bump().await;
                Ok(true)
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(dynamo("create a model record", &e)),
        }
    }

    pub async fn get_model(&self, id: &str) -> Result<ModelRecord, RepoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.models_table)
            .key("pk", s(MODEL))
            .key("sk", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| dynamo("read a model record", &e))?;
        match out.item() {
            Some(item) => model_from(item),
            None => Err(RepoError::NotFound(format!("model {id}"))),
        }
    }

    /// Every model, newest first.
    pub async fn list_models(&self) -> Result<Vec<ModelRecord>, RepoError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.models_table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(MODEL))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| dynamo("list model records", &e))?;
            for item in page.items() {
                out.push(model_from(item)?);
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Moves a model from one of `from` to `to`, with `changes`, in one conditional write.
    /// A model in any other state is a [`RepoError::Conflict`] naming its current state, and
    /// nothing is written.
    pub async fn transition(
        &self,
        id: &str,
        from: &[ModelStatus],
        to: ModelStatus,
        now: &str,
        changes: Changes,
    ) -> Result<ModelRecord, RepoError> {
        debug_assert!(from.iter().all(|f| f.can_move_to(to)), "{from:?} -> {to}");
        // Every attribute through a name placeholder: several (metrics, status) are DynamoDB
        // reserved words.
        let mut names = HashMap::from([
            ("#status".to_string(), "status".to_string()),
            ("#updated_at".to_string(), "updated_at".to_string()),
        ]);
        let mut sets = vec![
            "#status = :to".to_string(),
            "#updated_at = :now".to_string(),
        ];
        let mut values = HashMap::from([
            (":to".to_string(), s(to.as_str())),
            (":now".to_string(), s(now)),
        ]);
        let mut conds = Vec::new();
        for (i, f) in from.iter().enumerate() {
            conds.push(format!(":from{i}"));
            values.insert(format!(":from{i}"), s(f.as_str()));
        }
        if let Some(m) = &changes.metrics {
            sets.push("#metrics = :metrics".into());
            names.insert("#metrics".into(), "metrics".into());
            values.insert(":metrics".into(), metrics_av(m));
        }
        for (field, value) in [
            ("model_artifact", &changes.model_artifact),
            ("endpoint_config", &changes.endpoint_config),
            ("failure_reason", &changes.failure_reason),
        ] {
            if let Some(v) = value {
                sets.push(format!("#{field} = :{field}"));
                names.insert(format!("#{field}"), field.to_string());
                values.insert(format!(":{field}"), s(v));
            }
        }
        if let Some(d) = &changes.decision {
            sets.push(
                "#decisions = list_append(if_not_exists(#decisions, :empty), :decision)".into(),
            );
            names.insert("#decisions".into(), "decisions".into());
            values.insert(":empty".into(), AttributeValue::L(vec![]));
            values.insert(":decision".into(), AttributeValue::L(vec![decision_av(d)]));
        }
        let r = self
            .client
            .update_item()
            .table_name(&self.models_table)
            .key("pk", s(MODEL))
            .key("sk", s(id))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(format!(
                "attribute_exists(sk) AND #status IN ({})",
                conds.join(", ")
            ))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match r {
            Ok(out) => {
                self.bump().await;
                model_from(out.attributes().ok_or_else(|| RepoError::Malformed {
                    id: id.into(),
                    what: "no attributes returned".into(),
                })?)
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let current = match self.get_model(id).await {
                    Ok(m) => m.status.to_string(),
                    Err(RepoError::NotFound(_)) => {
                        return Err(RepoError::NotFound(format!("model {id}")))
                    }
                    Err(e) => return Err(e),
                };
                Err(RepoError::Conflict {
                    id: id.into(),
                    expected: from
                        .iter()
                        .map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    current,
                })
            }
            Err(e) => Err(dynamo("update a model record", &e)),
        }
    }
}
