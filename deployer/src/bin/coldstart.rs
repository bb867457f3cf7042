//! `./dev bench coldstart`: each packaged handler's cold start, process start to first
//! response, measured against a minimal Lambda Runtime API served here on a loopback port. Each
//! handler gets an event it answers without calling AWS (the API's health route; an image key
//! that is not a trigger; another stack's endpoint; an event of the wrong kind, answered as a
//! function error), so the figure is the runtime's own start, not the network. Also prints each
//! zip's size. Run after `deployer up` (or `cargo lambda build`) so the bootstraps exist.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn event_for(function: &str) -> serde_json::Value {
    match function {
        "api" => serde_json::json!({
            "resource": "/api/{proxy+}", "path": "/api/health", "httpMethod": "GET", "headers": {},
            "multiValueHeaders": {}, "queryStringParameters": null, "pathParameters": {"proxy": "health"},
            "stageVariables": null, "body": null, "isBase64Encoded": false,
            "requestContext": {"accountId": "123456789012", "resourceId": "abc", "stage": "v1",
                "requestId": "r-1", "requestTimeEpoch": 1795867205000_i64, "httpMethod": "GET",
                "path": "/v1/api/health", "resourcePath": "/api/{proxy+}", "apiId": "api1",
                "identity": {"sourceIp": "127.0.0.1"}}
        }),
        "on-dataset" => {
            serde_json::json!({"source": "aws.s3", "detail-type": "Object Created", "time": "2026-11-28T12:00:00Z",
            "detail": {"bucket": {"name": "data"}, "object": {"key": "datasets/x/train/O/a.jpg", "etag": "e"}}})
        }
        "on-endpoint" => {
            serde_json::json!({"source": "aws.sagemaker", "detail-type": "SageMaker Endpoint State Change",
            "time": "2026-11-28T12:00:00Z", "detail": {"EndpointName": "another-stack", "EndpointStatus": "IN_SERVICE"}})
        }
        _ => {
            serde_json::json!({"source": "bench", "detail-type": "Not For This Handler", "detail": {}})
        }
    }
}

/// Serves one invocation and returns when the handler answered (response or error).
fn serve_one(listener: &TcpListener, event: &serde_json::Value) -> Result<String> {
    loop {
        let (mut s, _) = listener.accept()?;
        let mut reader = BufReader::new(s.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
            let payload = event.to_string();
            write!(
                s,
                "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: bench-1\r\nLambda-Runtime-Deadline-Ms: {}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
                (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() + 30_000),
                payload.len()
            )?;
            continue;
        }
        write!(s, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")?;
        if line.contains("/error") {
            let body = String::from_utf8_lossy(&body);
            return Ok(format!(
                "function error: {}",
                body.chars().take(160).collect::<String>()
            ));
        }
        return Ok("response".to_string());
    }
}

fn main() -> Result<()> {
    let root = std::env::current_dir()?;
    let lambda_dir = root.join("target/lambda/x86_64");
    let runs: usize = 20;
    println!("function      zip bytes   cold start median   p99       answer");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&lambda_dir)
        .with_context(|| {
            format!(
                "failed to read {}; run `deployer up` first",
                lambda_dir.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("bootstrap").is_file())
        .collect();
    names.sort();
    if names.is_empty() {
        bail!(
            "no handlers built under {}; run `deployer up` first",
            lambda_dir.display()
        );
    }
    for dir in names {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let zip = std::fs::read(dir.join("bootstrap"))
            .map(|b| {
                deployer::package::deterministic_zip(&b)
                    .map(|z| z.len())
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let mut times = Vec::new();
        let mut answer = String::new();
        for _ in 0..runs {
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            let started = Instant::now();
            let mut child = Command::new(dir.join("bootstrap"))
                .env_clear()
                .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
                .env("AWS_LAMBDA_FUNCTION_NAME", format!("bench-{name}"))
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("APP_NAME", "wastesort")
                .env("APP_ENV", "bench")
                .env("DATA_BUCKET", "data")
                .env("MODELS_TABLE", "models")
                .env("JOBS_TABLE", "jobs")
                .env("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t")
                .env("ENDPOINT_NAME", "wastesort-bench-endpoint")
                .env("SAGEMAKER_ROLE_ARN", "arn:aws:iam::123456789012:role/r")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("failed to start {name}"))?;
            listener.set_nonblocking(false)?;
            answer = serve_one(&listener, &event_for(&name))?;
            times.push(started.elapsed());
            let _ = child.kill();
            let _ = child.wait();
            let _ = TcpStream::connect_timeout(&listener.local_addr()?, Duration::from_millis(1));
        }
        times.sort();
        let median = times[times.len() / 2];
        let p99 = times[((times.len() as f64 * 0.99).ceil() as usize).clamp(1, times.len()) - 1];
        println!(
            "{name:<13} {zip:>9}   {:>8.1} ms         {:>6.1} ms  {answer}",
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
