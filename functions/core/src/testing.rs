//! Test support (feature `testing`): a real moto server on a free loopback port, stopped on
//! drop, and a [`Pipeline`] over it with the stack's tables, bucket and topic. Used by the
//! handler crates' tests so each does not grow its own copy.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};

use crate::pipeline::Pipeline;
use crate::settings::Settings;

/// A moto server; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto from the project's venv (`./dev setup` installs it).
pub fn start_moto() -> Result<Moto, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(format!("{} is missing: run ./dev setup", python.display()));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("moto did not start within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(moto)
}

impl Moto {
    /// Emails moto recorded as sent: (subject, message).
    pub fn sent_emails(&self) -> Vec<(String, String)> {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return vec![];
        };
        let _ = write!(
            s,
            "GET /moto-api/data.json HTTP/1.0\r\nHost: localhost\r\n\r\n"
        );
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let data: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut out = Vec::new();
        for topic in data["sns"]["Topic"].as_array().cloned().unwrap_or_default() {
            for n in topic["sent_notifications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                // [message id, message, subject, attributes, group id]
                out.push((
                    n[2].as_str().unwrap_or_default().to_string(),
                    n[1].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        out
    }

    /// SDK configuration pointing at this server with dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "test", "test", None, None, "moto",
            ))
            .endpoint_url(format!("http://127.0.0.1:{}", self.port))
            .load()
            .await
    }

    /// The stack's tables (pk/sk), the data bucket `data` and the topic
    /// `wastesort-local-pipeline` (subscribed by `subscriber` when given), and a pipeline over
    /// them.
    pub async fn fixture(&self, subscriber: Option<&str>) -> Fixture {
        let cfg = self.sdk_config().await;
        let ddb = aws_sdk_dynamodb::Client::new(&cfg);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&cfg)
                .force_path_style(true)
                .build(),
        );
        let sns = aws_sdk_sns::Client::new(&cfg);
        for t in ["models", "jobs"] {
            create_table(&ddb, t).await;
        }
        let _ = s3.create_bucket().bucket("data").send().await;
        let topic = sns
            .create_topic()
            .name("wastesort-local-pipeline")
            .send()
            .await
            .ok()
            .and_then(|t| t.topic_arn().map(str::to_string))
            .unwrap_or_default();
        if let Some(email) = subscriber {
            let _ = sns
                .subscribe()
                .topic_arn(&topic)
                .protocol("email")
                .endpoint(email)
                .send()
                .await;
        }
        let pipeline = Pipeline::with_clients(
            settings(&topic),
            ddb,
            s3,
            sns,
            aws_sdk_sagemaker::Client::new(&cfg),
        );
        Fixture {
            cfg,
            topic,
            pipeline,
        }
    }

    /// A pipeline over the fixture, with one email subscription.
    pub async fn pipeline(&self) -> Pipeline {
        self.fixture(Some("ops@example.com")).await.pipeline
    }
}

/// What [`Moto::fixture`] made.
#[derive(Debug)]
pub struct Fixture {
    pub cfg: aws_config::SdkConfig,
    pub topic: String,
    pub pipeline: Pipeline,
}

/// The endpoint name the fixture's settings use.
pub const ENDPOINT: &str = "wastesort-local-endpoint";

/// A table with the stack's key schema: `pk` (hash) and `sk` (range), both strings.
pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .ok()
    };
    let key = |n: &str, k| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(k)
            .build()
            .ok()
    };
    let _ = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            [attr("pk"), attr("sk")].into_iter().flatten().collect(),
        ))
        .set_key_schema(Some(
            [key("pk", KeyType::Hash), key("sk", KeyType::Range)]
                .into_iter()
                .flatten()
                .collect(),
        ))
        .send()
        .await;
}

/// The settings the stack renders, for the fixture's resources.
pub fn settings(topic: &str) -> Settings {
    let get = |k: &str| -> Option<String> {
        Some(
            match k {
                "APP_NAME" => "wastesort",
                "APP_ENV" => "local",
                "DATA_BUCKET" => "data",
                "MODELS_TABLE" => "models",
                "JOBS_TABLE" => "jobs",
                "TOPIC_ARN" => topic,
                "ENDPOINT_NAME" => ENDPOINT,
                "SAGEMAKER_ROLE_ARN" => "arn:aws:iam::123456789012:role/wastesort-local-sagemaker",
                "TRAINING_IMAGE" => {
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com/waste-model@sha256:abc"
                }
                "HYPERPARAMETERS" => "{\"epochs\": \"2\"}",
                _ => return None,
            }
            .to_string(),
        )
    };
    Settings::from_lookup(&get).unwrap_or_else(|e| panic!("test settings: {e}"))
}
