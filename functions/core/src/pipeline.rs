//! The pipeline's operations over real clients: start a training run for a data set, take a
//! training job's outcome, accept / reject / roll back a model, and take the endpoint's state
//! changes. Every step is idempotent: a duplicate or late event finds the model already moved
//! (a repository conflict) and changes nothing.

use std::io::Read;

use aws_sdk_sagemaker::error::ProvideErrorMetadata;
use aws_sdk_sagemaker::types as sm;
use serde::Serialize;
use time::OffsetDateTime;

use crate::events::{EndpointDetail, EndpointStatus, TrainingDetail, TrainingStatus};
use crate::metrics::{compare, Metrics};
use crate::notify::{self, Email};
use crate::repo::{Changes, Decision, ModelRecord, Repo, RepoError};
use crate::settings::Settings;
use crate::specs::{self, EndpointSettings, TrainingInputs};
use crate::status::ModelStatus;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("failed to {action}: {message}")]
    Aws {
        action: &'static str,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
    /// The endpoint is being created or updated: one deployment at a time.
    #[error("{0}")]
    Busy(String),
}

fn aws<E: ProvideErrorMetadata + std::fmt::Display>(action: &'static str, e: &E) -> PipelineError {
    PipelineError::Aws {
        action,
        message: match (e.code(), e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            _ => e.to_string(),
        },
    }
}

pub fn now() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every client the handlers use, built once per cold start.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub settings: Settings,
    pub repo: Repo,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub sagemaker: aws_sdk_sagemaker::Client,
}

/// What starting a training run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Started {
    pub job: String,
    pub model_id: String,
    /// False when the same trigger had already started this job (a duplicate event).
    pub new: bool,
}

impl Pipeline {
    /// Clients from the standard environment (AWS_ENDPOINT_URL_* honoured; S3 path-style when
    /// an endpoint override is set, as emulators need).
    pub async fn from_env(settings: Settings) -> Pipeline {
        let cfg = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let path_style = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&cfg)
                .force_path_style(path_style)
                .build(),
        );
        Pipeline::with_clients(
            settings.clone(),
            aws_sdk_dynamodb::Client::new(&cfg),
            s3,
            aws_sdk_sns::Client::new(&cfg),
            aws_sdk_sagemaker::Client::new(&cfg),
        )
    }

    pub fn with_clients(
        settings: Settings,
        dynamodb: aws_sdk_dynamodb::Client,
        s3: aws_sdk_s3::Client,
        sns: aws_sdk_sns::Client,
        sagemaker: aws_sdk_sagemaker::Client,
    ) -> Pipeline {
        Pipeline {
            repo: Repo::new(
                dynamodb,
                settings.models_table.clone(),
                settings.jobs_table.clone(),
            ),
            settings,
            s3,
            sns,
            sagemaker,
        }
    }

    fn app_env(&self) -> String {
        format!("{} {}", self.settings.app, self.settings.env)
    }

    pub async fn email(&self, e: &Email) -> Result<(), PipelineError> {
        self.sns
            .publish()
            .topic_arn(&self.settings.topic_arn)
            .subject(&e.subject)
            .message(&e.body)
            .send()
            .await
            .map_err(|err| aws("publish a notification", &err))?;
        Ok(())
    }

    /// Starts training on a data set whose `_READY` marker has this etag. A duplicate event
    /// derives the same job name: SageMaker answers ResourceInUse and nothing new starts.
    pub async fn start_training(
        &self,
        dataset: &str,
        trigger_etag: &str,
    ) -> Result<Started, PipelineError> {
        let s = &self.settings;
        let has_validation = self
            .s3
            .list_objects_v2()
            .bucket(&s.data_bucket)
            .prefix(format!("{dataset}/validation/"))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| aws("list the data set", &e))?
            .key_count()
            .unwrap_or(0)
            > 0;
        let prefix = s.prefix();
        let spec = specs::training_job(&TrainingInputs {
            prefix: &prefix,
            app: &s.app,
            env: &s.env,
            bucket: &s.data_bucket,
            dataset,
            trigger_etag,
            has_validation,
            image: &s.training_image,
            role_arn: &s.sagemaker_role_arn,
            hyperparameters: &s.hyperparameters,
            max_runtime_s: s.training_max_runtime_s,
        });
        let model_id = spec.name.clone();
        let created = now();
        let record = ModelRecord {
            id: model_id.clone(),
            status: ModelStatus::Training,
            created_at: created.clone(),
            updated_at: created,
            dataset: dataset.into(),
            dataset_etag: Some(trigger_etag.into()),
            training_job: spec.name.clone(),
            model_artifact: None,
            endpoint_config: None,
            metrics: None,
            failure_reason: None,
            decisions: vec![],
        };
        let channels = spec.channels.iter().map(|c| {
            sm::Channel::builder()
                .channel_name(&c.name)
                .data_source(
                    sm::DataSource::builder()
                        .s3_data_source(
                            sm::S3DataSource::builder()
                                .s3_data_type(sm::S3DataType::S3Prefix)
                                .s3_uri(&c.s3_uri)
                                .s3_data_distribution_type(sm::S3DataDistribution::FullyReplicated)
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let channels: Vec<_> = channels.collect();
        // The record first: when SageMaker refuses a duplicate, the record already exists and
        // this run changes nothing.
        let new = self.repo.create_model(&record).await?;
        let mut req = self
            .sagemaker
            .create_training_job()
            .training_job_name(&spec.name)
            .role_arn(&spec.role_arn)
            .set_input_data_config(Some(channels))
            .output_data_config(
                sm::OutputDataConfig::builder()
                    .s3_output_path(&spec.output_path)
                    .build(),
            )
            .resource_config(
                sm::ResourceConfig::builder()
                    .instance_type(sm::TrainingInstanceType::from(spec.instance_type.as_str()))
                    .instance_count(spec.instance_count)
                    .volume_size_in_gb(spec.volume_gb)
                    .build(),
            )
            .stopping_condition(
                sm::StoppingCondition::builder()
                    .max_runtime_in_seconds(spec.max_runtime_s)
                    .build(),
            )
            .algorithm_specification(
                sm::AlgorithmSpecification::builder()
                    .training_image(&spec.image)
                    .training_input_mode(sm::TrainingInputMode::File)
                    .set_metric_definitions(Some(
                        spec.metric_definitions
                            .iter()
                            .map(|(n, r)| sm::MetricDefinition::builder().name(n).regex(r).build())
                            .collect(),
                    ))
                    .build(),
            );
        for (k, v) in &spec.hyperparameters {
            req = req.hyper_parameters(k, v);
        }
        for (k, v) in &spec.tags {
            req = req.tags(sm::Tag::builder().key(k).value(v).build());
        }
        match req.send().await {
            Ok(_) => Ok(Started {
                job: spec.name,
                model_id,
                new,
            }),
            Err(e) if e.code() == Some("ResourceInUse") => Ok(Started {
                job: spec.name,
                model_id,
                new: false,
            }),
            Err(e) => {
                let err = aws("start a training job", &e);
                if new {
                    let _ = self
                        .repo
                        .transition(
                            &model_id,
                            &[ModelStatus::Training],
                            ModelStatus::Failed,
                            &now(),
                            Changes {
                                failure_reason: Some(err.to_string()),
                                ..Default::default()
                            },
                        )
                        .await;
                }
                Err(err)
            }
        }
    }

    /// The newest complete data set: the greatest `datasets/<name>/_READY` key (pushes are
    /// named by UTC timestamp), with that marker's etag.
    pub async fn latest_dataset(&self) -> Result<Option<(String, String)>, PipelineError> {
        let mut best: Option<(String, String)> = None;
        let mut token: Option<String> = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.settings.data_bucket)
                .prefix("datasets/")
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| aws("list data sets", &e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                let Some(prefix) = key.strip_suffix("/_READY") else {
                    continue;
                };
                if prefix.matches('/').count() != 1 {
                    continue;
                }
                if best.as_ref().is_none_or(|(b, _)| prefix > b.as_str()) {
                    best = Some((
                        prefix.to_string(),
                        o.e_tag().unwrap_or_default().to_string(),
                    ));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => return Ok(best),
            }
        }
    }

    /// True while a training run is in progress (the API answers 409 to a second start).
    pub async fn training_in_progress(&self) -> Result<Option<ModelRecord>, PipelineError> {
        Ok(self
            .repo
            .list_models()
            .await?
            .into_iter()
            .find(|m| m.status == ModelStatus::Training))
    }

    /// Reads `metrics.json` from a training job's `model.tar.gz`.
    pub async fn read_metrics(&self, model_artifact: &str) -> Result<Metrics, PipelineError> {
        let (bucket, key) = split_s3(model_artifact).ok_or_else(|| {
            PipelineError::Invalid(format!("{model_artifact} is not an s3:// URI"))
        })?;
        let obj = self
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws("read the model archive", &e))?;
        let bytes = obj
            .body
            .collect()
            .await
            .map_err(|e| PipelineError::Invalid(format!("failed to read the model archive: {e}")))?
            .into_bytes();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let entries = archive
            .entries()
            .map_err(|e| PipelineError::Invalid(format!("model archive is not a tar.gz: {e}")))?;
        for entry in entries {
            let mut entry = entry
                .map_err(|e| PipelineError::Invalid(format!("model archive is corrupt: {e}")))?;
            let is_metrics = entry
                .path()
                .ok()
                .is_some_and(|p| p.file_name().is_some_and(|n| n == "metrics.json"));
            if is_metrics {
                let mut text = Vec::new();
                entry.read_to_end(&mut text).map_err(|e| {
                    PipelineError::Invalid(format!("cannot read metrics.json: {e}"))
                })?;
                return Metrics::from_json(&text)
                    .map_err(|e| PipelineError::Invalid(e.to_string()));
            }
        }
        Err(PipelineError::Invalid(format!(
            "{model_artifact} holds no metrics.json"
        )))
    }

    /// The model currently deployed, if any.
    pub async fn deployed(&self) -> Result<Option<ModelRecord>, PipelineError> {
        Ok(self
            .repo
            .list_models()
            .await?
            .into_iter()
            .find(|m| m.status == ModelStatus::Deployed))
    }

    /// A training job's final state. Returns the model as it is now, or None when the event
    /// was a duplicate or late (the model had already moved on).
    pub async fn on_training(
        &self,
        d: &TrainingDetail,
    ) -> Result<Option<ModelRecord>, PipelineError> {
        let id = d
            .tags
            .get("model")
            .cloned()
            .unwrap_or_else(|| d.name.clone());
        match d.status() {
            Some(TrainingStatus::Completed) => {
                let artifact = d
                    .model_artifacts
                    .s3_model_artifacts
                    .clone()
                    .ok_or_else(|| {
                        PipelineError::Invalid(format!(
                            "training job {} completed without ModelArtifacts",
                            d.name
                        ))
                    })?;
                let metrics = match self.read_metrics(&artifact).await {
                    Ok(m) => m,
                    // A model without readable metrics cannot be reviewed: it failed.
                    Err(e) => {
                        return self
                            .training_failed(&id, d, &format!("completed, but {e}"))
                            .await
                    }
                };
                let moved = self
                    .repo
                    .transition(
                        &id,
                        &[ModelStatus::Training],
                        ModelStatus::Staged,
                        &now(),
                        Changes {
                            metrics: Some(metrics.clone()),
                            model_artifact: Some(artifact),
                            ..Default::default()
                        },
                    )
                    .await;
                if let Ok(m) = &moved {
                    let deployed = self.deployed().await?;
                    let c = compare(
                        &metrics,
                        deployed.as_ref().and_then(|x| x.metrics.as_ref()),
                        &self.settings.primary_metric,
                    );
                    self.email(&notify::staged(
                        &self.app_env(),
                        &m.id,
                        &m.dataset,
                        &c,
                        &self.settings.review_url,
                    ))
                    .await?;
                }
                settle(moved)
            }
            Some(TrainingStatus::Failed) | Some(TrainingStatus::Stopped) => {
                let reason = match (d.failure_reason.clone(), d.secondary_status.as_deref()) {
                    (Some(r), _) if !r.is_empty() => r,
                    (_, Some("MaxRuntimeExceeded")) => format!(
                        "the job was stopped at its time limit ({} s, MaxRuntimeInSeconds; training_max_runtime_s in deployer.toml)",
                        self.settings.training_max_runtime_s
                    ),
                    (_, Some(secondary)) => format!("the job ended {} ({secondary})", d.status),
                    (_, None) => format!("the job ended {}", d.status),
                };
                self.training_failed(&id, d, &reason).await
            }
            _ => Ok(None),
        }
    }

    async fn training_failed(
        &self,
        id: &str,
        d: &TrainingDetail,
        reason: &str,
    ) -> Result<Option<ModelRecord>, PipelineError> {
        let moved = self
            .repo
            .transition(
                id,
                &[ModelStatus::Training],
                ModelStatus::Failed,
                &now(),
                Changes {
                    failure_reason: Some(reason.to_string()),
                    ..Default::default()
                },
            )
            .await;
        if let Ok(m) = &moved {
            self.email(&notify::training_failed(
                &self.app_env(),
                &d.name,
                &m.dataset,
                reason,
            ))
            .await?;
        }
        settle(moved)
    }

    /// Accepts a model: records the decision and starts its deployment. A repeated accept of a
    /// model already deploying or deployed answers with the same deployment and deploys once.
    pub async fn accept(
        &self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<Deployment, PipelineError> {
        let current = self.repo.get_model(id).await?;
        if matches!(
            current.status,
            ModelStatus::Deploying | ModelStatus::Deployed
        ) {
            if let Some(config) = current.endpoint_config.clone() {
                return Ok(Deployment {
                    model_id: id.into(),
                    deployment_id: config,
                    new: false,
                });
            }
        }
        self.deploy(
            id,
            &[ModelStatus::Staged, ModelStatus::DeployFailed],
            "accept",
            by,
            reason,
        )
        .await
    }

    /// Serves an earlier (superseded) model again.
    pub async fn rollback(
        &self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<Deployment, PipelineError> {
        self.deploy(id, &[ModelStatus::Superseded], "rollback", by, reason)
            .await
    }

    /// Retires a superseded model: it is no longer a rollback target, and its endpoint config
    /// and SageMaker model are deleted (never the config the endpoint runs on).
    pub async fn retire(
        &self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<ModelRecord, PipelineError> {
        let model = self.repo.get_model(id).await?;
        let config = model.endpoint_config.clone();
        if let Some(c) = &config {
            let live = self
                .sagemaker
                .describe_endpoint()
                .endpoint_name(&self.settings.endpoint_name)
                .send()
                .await
                .ok()
                .and_then(|d| d.endpoint_config_name().map(str::to_string));
            if live.as_deref() == Some(c.as_str()) {
                return Err(PipelineError::Invalid(format!(
                    "model {id}'s endpoint config {c} is the one the endpoint runs on; deploy another model first"
                )));
            }
        }
        let at = now();
        let retired = self
            .repo
            .transition(
                id,
                &[ModelStatus::Superseded],
                ModelStatus::Retired,
                &at,
                Changes {
                    decision: Some(Decision {
                        action: "retire".into(),
                        by: by.into(),
                        at: at.clone(),
                        reason: reason.into(),
                    }),
                    ..Default::default()
                },
            )
            .await?;
        if let Some(c) = config {
            // Names follow specs::endpoint_deployment: the model shares the config's suffix.
            let model_name = c.replacen("-cfg-", "-model-", 1);
            self.sagemaker
                .delete_endpoint_config()
                .endpoint_config_name(&c)
                .send()
                .await
                .map_err(|e| aws("delete the retired endpoint config", &e))?;
            let _ = self
                .sagemaker
                .delete_model()
                .model_name(model_name)
                .send()
                .await;
        }
        Ok(retired)
    }

    pub async fn reject(
        &self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<ModelRecord, PipelineError> {
        let at = now();
        Ok(self
            .repo
            .transition(
                id,
                &[ModelStatus::Staged],
                ModelStatus::Rejected,
                &at,
                Changes {
                    decision: Some(Decision {
                        action: "reject".into(),
                        by: by.into(),
                        at: at.clone(),
                        reason: reason.into(),
                    }),
                    ..Default::default()
                },
            )
            .await?)
    }

    async fn deploy(
        &self,
        id: &str,
        from: &[ModelStatus],
        action: &str,
        by: &str,
        reason: &str,
    ) -> Result<Deployment, PipelineError> {
        let model = self.repo.get_model(id).await?;
        let artifact = model.model_artifact.clone().ok_or_else(|| {
            PipelineError::Invalid(format!("model {id} has no artifact to deploy"))
        })?;
        // One deployment at a time: SageMaker refuses to update an endpoint that is updating,
        // so say so before anything changes.
        if let Ok(ep) = self
            .sagemaker
            .describe_endpoint()
            .endpoint_name(&self.settings.endpoint_name)
            .send()
            .await
        {
            let status = ep
                .endpoint_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if !matches!(status.as_str(), "InService" | "Failed" | "") {
                return Err(PipelineError::Busy(format!(
                    "the endpoint {} is {status}: a deployment is in progress",
                    self.settings.endpoint_name
                )));
            }
        }
        let at = now();
        // Milliseconds too: two deployments of one model within a second (a rollback, another
        // deploy, a rollback again) must not collide on SageMaker model and config names.
        let millis = OffsetDateTime::now_utc().millisecond();
        let deployment_id = format!(
            "{}-{}{millis:03}",
            id,
            at.replace([':', '-'], "").to_ascii_lowercase()
        );
        let s = &self.settings;
        let d = specs::endpoint_deployment(
            &EndpointSettings {
                endpoint: &s.endpoint_name,
                variant: &s.endpoint_variant,
                image: &s.training_image,
                memory_mb: s.endpoint_memory_mb,
                max_concurrency: s.endpoint_max_concurrency,
            },
            id,
            &deployment_id,
            &artifact,
        );
        // The state change first: of two concurrent accepts only one gets past it.
        self.repo
            .transition(
                id,
                from,
                ModelStatus::Deploying,
                &at,
                Changes {
                    endpoint_config: Some(d.config_name.clone()),
                    decision: Some(Decision {
                        action: action.into(),
                        by: by.into(),
                        at: at.clone(),
                        reason: reason.into(),
                    }),
                    ..Default::default()
                },
            )
            .await?;
        if let Err(e) = self.create_endpoint_resources(&d).await {
            let _ = self
                .repo
                .transition(
                    id,
                    &[ModelStatus::Deploying],
                    ModelStatus::DeployFailed,
                    &now(),
                    Changes {
                        failure_reason: Some(e.to_string()),
                        ..Default::default()
                    },
                )
                .await;
            return Err(e);
        }
        Ok(Deployment {
            model_id: id.into(),
            deployment_id: d.config_name,
            new: true,
        })
    }

    async fn create_endpoint_resources(
        &self,
        d: &specs::EndpointDeployment,
    ) -> Result<(), PipelineError> {
        let tags = |model: &str| -> Vec<sm::Tag> {
            [
                ("app", self.settings.app.as_str()),
                ("env", self.settings.env.as_str()),
                ("model", model),
            ]
            .iter()
            .map(|(k, v)| sm::Tag::builder().key(*k).value(*v).build())
            .collect()
        };
        let model_id = d.environment.get("MODEL_ID").cloned().unwrap_or_default();
        let mut container = sm::ContainerDefinition::builder()
            .image(&d.image)
            .model_data_url(&d.model_data_url);
        for (k, v) in &d.environment {
            container = container.environment(k, v);
        }
        self.sagemaker
            .create_model()
            .model_name(&d.model_name)
            .execution_role_arn(&self.settings.sagemaker_role_arn)
            .primary_container(container.build())
            .set_tags(Some(tags(&model_id)))
            .send()
            .await
            .map_err(|e| aws("create the SageMaker model", &e))?;
        self.sagemaker
            .create_endpoint_config()
            .endpoint_config_name(&d.config_name)
            .production_variants(
                sm::ProductionVariant::builder()
                    .variant_name(&d.variant)
                    .model_name(&d.model_name)
                    .serverless_config(
                        sm::ProductionVariantServerlessConfig::builder()
                            .memory_size_in_mb(d.memory_mb)
                            .max_concurrency(d.max_concurrency)
                            .build(),
                    )
                    .build(),
            )
            .set_tags(Some(tags(&model_id)))
            .send()
            .await
            .map_err(|e| aws("create the endpoint config", &e))?;
        let exists = self
            .sagemaker
            .describe_endpoint()
            .endpoint_name(&d.endpoint)
            .send()
            .await
            .is_ok();
        if exists {
            self.sagemaker
                .update_endpoint()
                .endpoint_name(&d.endpoint)
                .endpoint_config_name(&d.config_name)
                .send()
                .await
                .map_err(|e| {
                    // Another deployment won the race since the status check.
                    if e.code() == Some("ValidationException")
                        && e.message().is_some_and(|m| m.contains("in-progress"))
                    {
                        PipelineError::Busy(format!(
                            "the endpoint {} is updating: a deployment is in progress",
                            d.endpoint
                        ))
                    } else {
                        aws("update the endpoint", &e)
                    }
                })?;
        } else {
            self.sagemaker
                .create_endpoint()
                .endpoint_name(&d.endpoint)
                .endpoint_config_name(&d.config_name)
                .set_tags(Some(tags(&model_id)))
                .send()
                .await
                .map_err(|e| aws("create the endpoint", &e))?;
        }
        Ok(())
    }

    /// The endpoint's state changed. InService on the config being deployed (and no
    /// FailureReason) completes the deployment; Failed, or InService on another config (an
    /// update that fell back), marks it deploy_failed while the old model keeps serving.
    pub async fn on_endpoint(
        &self,
        d: &EndpointDetail,
    ) -> Result<Option<ModelRecord>, PipelineError> {
        let status = d.status();
        if !matches!(
            status,
            Some(EndpointStatus::InService)
                | Some(EndpointStatus::Failed)
                | Some(EndpointStatus::UpdateRollbackFailed)
        ) {
            return Ok(None);
        }
        let Some(deploying) = self
            .repo
            .list_models()
            .await?
            .into_iter()
            .find(|m| m.status == ModelStatus::Deploying)
        else {
            return Ok(None); // nothing waits on this endpoint: a duplicate or late event
        };
        // The event may be stale; ask the endpoint itself.
        let live = self
            .sagemaker
            .describe_endpoint()
            .endpoint_name(&d.name)
            .send()
            .await
            .map_err(|e| aws("describe the endpoint", &e))?;
        let live_config = live.endpoint_config_name().unwrap_or_default().to_string();
        let live_status = live
            .endpoint_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let failure = live
            .failure_reason()
            .map(str::to_string)
            .or_else(|| d.failure_reason.clone());
        let ours = deploying.endpoint_config.as_deref() == Some(live_config.as_str());
        if live_status == "InService" && ours && failure.is_none() {
            let previous = self.deployed().await?;
            let moved = self
                .repo
                .transition(
                    &deploying.id,
                    &[ModelStatus::Deploying],
                    ModelStatus::Deployed,
                    &now(),
                    Changes::default(),
                )
                .await;
            if let Ok(m) = &moved {
                if let Some(p) = previous.filter(|p| p.id != m.id) {
                    let _ = self
                        .repo
                        .transition(
                            &p.id,
                            &[ModelStatus::Deployed],
                            ModelStatus::Superseded,
                            &now(),
                            Changes::default(),
                        )
                        .await;
                }
                self.email(&notify::deployed(
                    &self.app_env(),
                    &m.id,
                    &d.name,
                    &live_config,
                ))
                .await?;
            }
            return settle(moved);
        }
        if live_status == "InService"
            || live_status == "Failed"
            || live_status == "UpdateRollbackFailed"
        {
            let reason = failure.unwrap_or_else(|| {
                format!(
                    "endpoint is {live_status} on config {live_config}, not {}",
                    deploying.endpoint_config.clone().unwrap_or_default()
                )
            });
            let moved = self
                .repo
                .transition(
                    &deploying.id,
                    &[ModelStatus::Deploying],
                    ModelStatus::DeployFailed,
                    &now(),
                    Changes {
                        failure_reason: Some(reason.clone()),
                        ..Default::default()
                    },
                )
                .await;
            if let Ok(m) = &moved {
                self.email(&notify::deploy_failed(
                    &self.app_env(),
                    &m.id,
                    &d.name,
                    &reason,
                ))
                .await?;
            }
            return settle(moved);
        }
        Ok(None)
    }
}

/// The endpoint as SageMaker describes it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointInfo {
    pub name: String,
    /// SageMaker's EndpointStatus as it spells it (`InService`, `Creating`, `Updating`, ...).
    pub status: String,
    pub config_name: Option<String>,
    pub failure_reason: Option<String>,
    pub last_modified: Option<String>,
}

impl Pipeline {
    /// Subscribes an address to the pipeline's notifications. SNS sends the confirmation
    /// email; nothing is delivered until the recipient confirms.
    pub async fn subscribe(&self, email: &str) -> Result<(), PipelineError> {
        self.sns
            .subscribe()
            .topic_arn(&self.settings.topic_arn)
            .protocol("email")
            .endpoint(email)
            .send()
            .await
            .map_err(|e| aws("subscribe to notifications", &e))?;
        Ok(())
    }

    /// The endpoint's live state, or None when it does not exist (nothing has been deployed
    /// yet: endpoints are created by the first accept).
    pub async fn endpoint_status(&self) -> Result<Option<EndpointInfo>, PipelineError> {
        let r = self
            .sagemaker
            .describe_endpoint()
            .endpoint_name(&self.settings.endpoint_name)
            .send()
            .await;
        match r {
            Ok(out) => Ok(Some(EndpointInfo {
                name: out
                    .endpoint_name()
                    .unwrap_or(&self.settings.endpoint_name)
                    .to_string(),
                status: out
                    .endpoint_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                config_name: out.endpoint_config_name().map(str::to_string),
                failure_reason: out.failure_reason().map(str::to_string),
                last_modified: out.last_modified_time().and_then(|t| {
                    t.fmt(aws_sdk_sagemaker::primitives::DateTimeFormat::DateTime)
                        .ok()
                }),
            })),
            // SageMaker answers a missing endpoint with a ValidationException naming it.
            Err(e)
                if e.code() == Some("ValidationException")
                    && e.message().is_some_and(|m| m.contains("Could not find")) =>
            {
                Ok(None)
            }
            Err(e) => Err(aws("describe the endpoint", &e)),
        }
    }

    /// Stores a user's upload under `uploads/<date>/<sha256>.<ext>` in the data bucket and
    /// returns the key. Named by content, so the same image uploaded twice is stored once.
    pub async fn store_upload(
        &self,
        bytes: &[u8],
        ext: &str,
        content_type: &str,
    ) -> Result<String, PipelineError> {
        use sha2::Digest;
        let date = OffsetDateTime::now_utc().date();
        let key = format!(
            "uploads/{date}/{}.{ext}",
            hex::encode(sha2::Sha256::digest(bytes))
        );
        self.s3
            .put_object()
            .bucket(&self.settings.data_bucket)
            .key(&key)
            .content_type(content_type)
            .body(bytes.to_vec().into())
            .send()
            .await
            .map_err(|e| aws("store the upload", &e))?;
        Ok(key)
    }
}

/// A deployment that was started (or found already started).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployment {
    pub model_id: String,
    pub deployment_id: String,
    pub new: bool,
}

/// A conflict means the event was already handled: not an error for an event handler.
fn settle(r: Result<ModelRecord, RepoError>) -> Result<Option<ModelRecord>, PipelineError> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(RepoError::Conflict { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn split_s3(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?.split_once('/')
}
