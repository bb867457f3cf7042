//! The local cloud's process: its configuration, the shared state every service reaches
//! (clients to moto, the Lambda runtime, the event bus, SageMaker, the outbox, the recorder),
//! start-up (bind, restore moto's state, restart endpoints), the run file the deployer reads,
//! and a clean shutdown on SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{httpx, io_err, Error};

/// The run file in the state directory: how the deployer finds a running local cloud.
pub const RUN_FILE: &str = "localcloud.json";

#[derive(Debug, Clone)]
pub struct Config {
    /// The environment's state directory (`.deployer/local/`).
    pub state_dir: PathBuf,
    /// moto's base URL.
    pub moto_url: String,
    /// The front door (every AWS API); 0 = a free port.
    pub port: u16,
    /// The REST API gateway; 0 = a free port.
    pub api_port: u16,
    pub region: String,
    pub account: String,
    /// The model binary (`waste-model`) the `local://waste-model@sha256:<hex>` image names.
    pub model_binary: Option<PathBuf>,
    pub model_sha256: Option<String>,
    /// Replay the recorded calls into a fresh moto before serving.
    pub restore: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub pid: u32,
    pub port: u16,
    pub api_port: u16,
    pub url: String,
    pub api_base: String,
    pub moto_url: String,
    pub started: String,
    /// Recorded calls replayed into moto at start (0 when nothing was restored).
    pub restored_calls: usize,
}

/// Everything the services share.
#[derive(Debug)]
pub struct Cloud {
    pub cfg: Config,
    pub front_url: String,
    pub api_base: String,
    pub http: httpx::Client,
    /// SDK configuration pointing straight at moto (reads of the deployed stack's config).
    pub moto: aws_config::SdkConfig,
    /// S3 through the front door, so objects the local cloud writes emit events as on AWS.
    pub s3: aws_sdk_s3::Client,
    pub lambda: crate::lambda::Lambdas,
    pub bus: crate::bus::Bus,
    pub sagemaker: crate::sagemaker::SageMaker,
    pub outbox: crate::outbox::Outbox,
    pub recorder: crate::record::Recorder,
    pub procs: crate::procs::Procs,
    pub s3events: crate::s3events::S3Events,
    pub routes: crate::apigw::Routes,
    pub authorizers: crate::authorizer::Authorizers,
}

impl Cloud {
    pub fn work_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("localcloud")
    }

    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.cfg.region, self.cfg.account
        )
    }
}

async fn sdk_config(region: &str, endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "localcloud",
        ))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// Runs the local cloud until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), Error> {
    if let Some(bin) = &cfg.model_binary {
        if !bin.exists() {
            return Err(Error::ModelBinaryMissing {
                path: bin.display().to_string(),
            });
        }
    }
    let front = httpx::bind(cfg.port, "the local cloud's AWS endpoint").await?;
    let api = httpx::bind(cfg.api_port, "the local API gateway").await?;
    let port = front
        .local_addr()
        .map_err(io_err("read the bound port"))?
        .port();
    let api_port = api
        .local_addr()
        .map_err(io_err("read the bound port"))?
        .port();
    let front_url = format!("http://127.0.0.1:{port}");
    let api_base = format!("http://127.0.0.1:{api_port}");
    let work = cfg.state_dir.join("localcloud");
    std::fs::create_dir_all(&work).map_err(io_err(format!("create {}", work.display())))?;

    let moto = sdk_config(&cfg.region, &cfg.moto_url).await;
    let front_sdk = sdk_config(&cfg.region, &front_url).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&front_sdk)
            .force_path_style(true)
            .build(),
    );
    let cloud = Arc::new(Cloud {
        recorder: crate::record::Recorder::new(cfg.state_dir.join("localcloud/recording.jsonl")),
        sagemaker: crate::sagemaker::SageMaker::load(&work)?,
        outbox: crate::outbox::Outbox::new(cfg.state_dir.join("localcloud/outbox.jsonl"))?,
        lambda: crate::lambda::Lambdas::default(),
        bus: crate::bus::Bus::default(),
        procs: crate::procs::Procs::default(),
        s3events: crate::s3events::S3Events::load(work.join("s3-eventbridge.json"))?,
        routes: crate::apigw::Routes::default(),
        authorizers: crate::authorizer::Authorizers::default(),
        http: httpx::Client::new(),
        front_url: front_url.clone(),
        api_base: api_base.clone(),
        moto,
        s3,
        cfg: cfg.clone(),
    });

    let restored_calls = if cfg.restore {
        cloud.recorder.replay(&cloud.http, &cfg.moto_url).await
    } else {
        0
    };

    crate::front::serve(cloud.clone(), front);
    crate::apigw::serve(cloud.clone(), api);
    crate::bus::start_scheduler(cloud.clone());
    crate::sagemaker::restore(cloud.clone());

    let info = RunInfo {
        pid: std::process::id(),
        port,
        api_port,
        url: front_url,
        api_base,
        moto_url: cfg.moto_url.clone(),
        started: httpx::now_iso(),
        restored_calls,
    };
    let run_file = cfg.state_dir.join(RUN_FILE);
    let text = serde_json::to_string_pretty(&info).unwrap_or_default();
    crate::files::write_atomically(&run_file, text.as_bytes())
        .map_err(io_err(format!("write {}", run_file.display())))?;
    tracing::info!(port, api_port, restored_calls, "local cloud ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io_err("install the SIGTERM handler"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: terminating child processes");
    cloud
        .sagemaker
        .shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    cloud.sagemaker.save();
    cloud.procs.signal_all("TERM");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cloud.procs.signal_all("KILL");
    let _ = std::fs::remove_file(&run_file);
    Ok(())
}
