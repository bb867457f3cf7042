//! The `bench` subcommand: forward-pass latency (batch 1, one thread), end-to-end
//! `/invocations` latency over loopback through the real server, model size and peak memory,
//! so a user can check a model on their own machine. Also home of the small keep-alive HTTP/1.1
//! client that the benchmark and the server tests use (no HTTP client crate needed).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::artifact::{ArtifactError, Model};
use crate::imageio::{encode_jpeg, ImageError};
use crate::nn::NnError;
use crate::train::MlRoot;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Model(#[from] ArtifactError),
    #[error("failed to {what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("failed to encode the benchmark JPEG: {0}")]
    Encode(#[from] image::ImageError),
    #[error("failed to decode the benchmark image (give a JPEG or PNG with --image): {0}")]
    Image(#[from] ImageError),
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("failed to {what}: {source}")]
    Net {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the benchmark server answered {status}: {body}")]
    Status { status: u16, body: String },
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.display().to_string();
    move |source| BenchError::File { what, path, source }
}

fn net_err(what: &'static str) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Net { what, source }
}

/// A minimal HTTP/1.1 client over one keep-alive connection.
#[derive(Debug)]
pub struct HttpClient {
    stream: BufReader<TcpStream>,
}

impl HttpClient {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(s),
        })
    }

    /// Sends one request and reads the response: (status, body).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let ct = content_type.map_or(String::new(), |c| format!("Content-Type: {c}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{ct}Content-Length: {}\r\n\r\n",
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("malformed status line"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(bad("connection closed in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(|_| bad("bad content-length"))?;
                }
            }
        }
        let mut out = vec![0u8; len];
        self.stream.read_exact(&mut out).await?;
        Ok((status, out))
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub forward_p50_us: f64,
    pub forward_p99_us: f64,
    /// Also reported because on a shared machine p99 is set by scheduler preemption.
    pub forward_p90_us: f64,
    /// Which forward pass served: the direct-convolution kernel and its instruction set, or
    /// the sgemm path (the backbone, or a CPU without FMA).
    pub forward_kernel: String,
    /// The small CNN's im2col + sgemm (ndarray over matrixmultiply) pass on the same input in
    /// the same run, the baseline the direct kernel replaced; `None` for the backbone.
    pub sgemm_forward_p50_us: Option<f64>,
    pub sgemm_forward_p99_us: Option<f64>,
    pub preprocess_p50_us: f64,
    pub invocation_p50_us: f64,
    pub invocation_p99_us: f64,
    pub invocation_p90_us: f64,
    /// Load average when the benchmark ended (Linux), to judge how quiet the machine was.
    pub load_average_1m: f64,
    pub model_bytes: u64,
    pub peak_rss_bytes: u64,
    pub parameters: usize,
    pub macs: usize,
    pub input_size: usize,
    pub image_bytes: usize,
    pub iterations: usize,
    /// Class probabilities of the benchmark image (to compare other runtimes against).
    pub probabilities: Vec<f32>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "forward (batch 1, 1 thread): p50 {:.0} us, p90 {:.0} us, p99 {:.0} us",
            self.forward_p50_us, self.forward_p90_us, self.forward_p99_us
        )?;
        writeln!(f, "forward kernel: {}", self.forward_kernel)?;
        if let (Some(p50), Some(p99)) = (self.sgemm_forward_p50_us, self.sgemm_forward_p99_us) {
            writeln!(
                f,
                "baseline im2col + sgemm forward (same input, same run): p50 {p50:.0} us, p99 {p99:.0} us"
            )?;
        }
        writeln!(f, "decode + resize: p50 {:.0} us", self.preprocess_p50_us)?;
        writeln!(
            f,
            "/invocations over loopback ({} byte image): p50 {:.0} us, p90 {:.0} us, p99 {:.0} us",
            self.image_bytes,
            self.invocation_p50_us,
            self.invocation_p90_us,
            self.invocation_p99_us
        )?;
        write!(
            f,
            "model: {} bytes, {} parameters, {} MACs at {}x{}; peak RSS {} bytes; load average {:.2}",
            self.model_bytes,
            self.parameters,
            self.macs,
            self.input_size,
            self.input_size,
            self.peak_rss_bytes,
            self.load_average_1m
        )
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 where unavailable.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn time_us(
    mut f: impl FnMut() -> Result<(), BenchError>,
    n: usize,
) -> Result<Vec<f64>, BenchError> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(f64::total_cmp);
    Ok(v)
}

/// Runs the benchmark against `<ml_root>/model` with `image` (default: a synthetic 256x256 JPEG).
/// With `dump_input`, the prepared input tensor (f32 little-endian, 1x3xSxS) is written there so
/// another runtime (`bench/onnx_compare.py`) can run the identical input.
pub fn run(
    ml_root: &Path,
    image: Option<&Path>,
    iterations: usize,
    dump_input: Option<&Path>,
) -> Result<BenchReport, BenchError> {
    let iterations = iterations.max(10);
    let dir = MlRoot(ml_root.to_path_buf()).model_dir();
    let model = Model::load(&dir)?;
    let model_bytes = std::fs::metadata(dir.join(&model.meta.weights_file))
        .map(|m| m.len())
        .unwrap_or(0);
    let bytes = match image {
        Some(p) => std::fs::read(p).map_err(file_err("read", p))?,
        None => {
            let img = crate::synth::render_sized(&mut crate::rng::Rng::new(1), true, 256, 256);
            encode_jpeg(&img, 90)?
        }
    };
    let x = model.prepare(&bytes)?;
    if let Some(path) = dump_input {
        let raw: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(path, raw).map_err(file_err("write", path))?;
    }
    let probabilities = model.probabilities(&x)?;
    let forward = |n| {
        time_us(
            || {
                model.probabilities(&x)?;
                Ok(())
            },
            n,
        )
    };
    forward(iterations.min(200))?;
    let fwd = forward(iterations)?;
    let sgemm = if model.sgemm_probabilities(&x).is_some() {
        let run = |n| {
            time_us(
                || {
                    model.sgemm_probabilities(&x).transpose()?;
                    Ok(())
                },
                n,
            )
        };
        run(iterations.min(200))?;
        Some(run(iterations)?)
    } else {
        None
    };
    let forward_kernel = model.forward_kernel();
    let pre = time_us(
        || {
            model.prepare(&bytes)?;
            Ok(())
        },
        iterations.min(300),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(net_err("start the async runtime"))?;
    let parameters = model.net.param_count();
    let macs = model.net.macs();
    let input_size = model.meta.input_size;
    let inv = rt.block_on(async {
        let server = crate::serve::start(([127, 0, 0, 1], 0).into(), Some("bench".into()))
            .await
            .map_err(net_err("start the server on 127.0.0.1"))?;
        server.set_model(model);
        let mut client = HttpClient::connect(server.addr)
            .await
            .map_err(net_err("connect to the benchmark server"))?;
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations + 50 {
            let t = Instant::now();
            let (status, body) = client
                .request("POST", "/invocations", Some("image/jpeg"), &bytes)
                .await
                .map_err(net_err("send a benchmark request"))?;
            let us = t.elapsed().as_secs_f64() * 1e6;
            if status != 200 {
                return Err(BenchError::Status {
                    status,
                    body: String::from_utf8_lossy(&body).into_owned(),
                });
            }
            // The first 50 requests warm up connections, the blocking pool and caches.
            if i >= 50 {
                times.push(us);
            }
        }
        server.stop().await;
        times.sort_by(f64::total_cmp);
        Ok::<_, BenchError>(times)
    })?;
    Ok(BenchReport {
        forward_p50_us: percentile(&fwd, 0.5),
        forward_p99_us: percentile(&fwd, 0.99),
        forward_p90_us: percentile(&fwd, 0.9),
        forward_kernel,
        sgemm_forward_p50_us: sgemm.as_deref().map(|t| percentile(t, 0.5)),
        sgemm_forward_p99_us: sgemm.as_deref().map(|t| percentile(t, 0.99)),
        preprocess_p50_us: percentile(&pre, 0.5),
        invocation_p50_us: percentile(&inv, 0.5),
        invocation_p99_us: percentile(&inv, 0.99),
        invocation_p90_us: percentile(&inv, 0.9),
        load_average_1m: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0),
        model_bytes,
        peak_rss_bytes: peak_rss_bytes(),
        parameters,
        macs,
        input_size,
        image_bytes: bytes.len(),
        iterations,
        probabilities,
    })
}
