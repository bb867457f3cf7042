//! Command-line interface of the binary: argument definitions, the dispatch from subcommands to
//! the library, and the `serve` process lifecycle (runtime, signals). Errors get their context
//! here (anyhow, "failed to <verb> <noun>"); `main.rs` only reports them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use waste_model::artifact::Model;
use waste_model::serve::start;
use waste_model::train::{self, MlRoot};

#[derive(Debug, Parser)]
#[command(
    name = "waste-model",
    version,
    about = "Trains and serves the Organic/Recyclable waste classifier (SageMaker container contract)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train on <ml-root>/input/data/{train,validation}; write <ml-root>/model and metrics.
    Train {
        #[arg(long, default_value = "/opt/ml")]
        ml_root: PathBuf,
    },
    /// Serve <ml-root>/model: GET /ping, POST /invocations.
    Serve {
        #[arg(long, default_value = "/opt/ml")]
        ml_root: PathBuf,
        /// Port (default: $SAGEMAKER_BIND_TO_PORT, else 8080).
        #[arg(long)]
        port: Option<u16>,
        /// Address to bind.
        #[arg(long, default_value = "0.0.0.0")]
        host: String,
    },
    /// Classify local image files with <ml-root>/model.
    Predict {
        #[arg(long, default_value = "/opt/ml")]
        ml_root: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write a synthetic two-class data set (Kaggle TRAIN/TEST layout, labelled synthetic).
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 2000)]
        count: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// `realistic`: photo-like sizes (180 to 800 px), uneven light, colour casts, grey
        /// images and PNGs (the model README's benchmark).
        #[arg(long, value_enum, default_value_t = waste_model::synth::Style::Plain)]
        style: waste_model::synth::Style,
    },
    /// Measure forward-pass and /invocations latency, model size and peak memory.
    Bench {
        #[arg(long, default_value = "/opt/ml")]
        ml_root: PathBuf,
        /// Image to send (default: a generated 256x256 JPEG).
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        iterations: usize,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
        /// Also write the prepared input tensor (raw f32 LE) here, for runtime comparisons.
        #[arg(long)]
        dump_input: Option<PathBuf>,
    },
    /// Metrics of <ml-root>/model on a labelled folder (class folders or Kaggle layout: TEST/).
    Evaluate {
        #[arg(long, default_value = "/opt/ml")]
        ml_root: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

/// Sets `flag` when SIGTERM arrives (SageMaker's stop), from a small background thread.
fn watch_sigterm(flag: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                eprintln!("SIGTERM received: stopping training");
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    });
}

fn load_model(ml_root: &std::path::Path) -> anyhow::Result<Model> {
    let dir = MlRoot(ml_root.to_path_buf()).model_dir();
    Model::load(&dir).with_context(|| format!("failed to load the model from {}", dir.display()))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!(
        "{}",
        serde_json::to_string_pretty(v).context("failed to serialise output")?
    );
    Ok(())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Train { ml_root } => {
            let root = MlRoot(ml_root);
            let stop = Arc::new(AtomicBool::new(false));
            watch_sigterm(stop.clone());
            let mut stdout = std::io::stdout();
            match train::run(&root, &stop, &mut stdout) {
                Ok(m) => {
                    println!(
                        "final accuracy={:.4} f1={:.4} auc_roc={} loss={:.4} support={}",
                        m.accuracy,
                        m.f1,
                        m.auc_roc.map_or("nan".into(), |a| format!("{a:.4}")),
                        m.loss,
                        m.support
                    );
                    Ok(())
                }
                Err(e) => {
                    let reason = format!("failed to train the model: {e}");
                    if let Err(w) = train::write_failure(&root, &reason) {
                        eprintln!("also failed to write {}: {w}", root.failure().display());
                    }
                    Err(anyhow::Error::new(e).context("failed to train the model"))
                }
            }
        }
        Command::Serve {
            ml_root,
            port,
            host,
        } => {
            let port = match port {
                Some(p) => p,
                None => match std::env::var("SAGEMAKER_BIND_TO_PORT") {
                    Ok(v) => v.parse().with_context(|| {
                        format!("failed to parse SAGEMAKER_BIND_TO_PORT={v:?} as a port number")
                    })?,
                    Err(_) => 8080,
                },
            };
            run_serve(&host, port, MlRoot(ml_root).model_dir())
        }
        Command::Predict {
            ml_root,
            output,
            files,
        } => {
            let model = load_model(&ml_root)?;
            let mut results = Vec::new();
            for f in &files {
                let bytes =
                    std::fs::read(f).with_context(|| format!("failed to read {}", f.display()))?;
                let p = model
                    .predict_bytes(&bytes)
                    .with_context(|| format!("failed to classify {}", f.display()))?;
                if output == Output::Text {
                    println!("{}\t{}\t{:.4}", f.display(), p.label, p.confidence);
                }
                results.push(serde_json::json!({"file": f.display().to_string(), "prediction": p}));
            }
            if output == Output::Json {
                print_json(&results)?;
            }
            Ok(())
        }
        Command::Synth {
            out,
            count,
            seed,
            style,
        } => {
            let s = waste_model::synth::write_dataset_styled(&out, count, seed, style)
                .with_context(|| {
                    format!(
                        "failed to write the synthetic data set to {}",
                        out.display()
                    )
                })?;
            eprintln!(
                "wrote {} synthetic images ({} train, {} test; {} Organic) to {}",
                s.count,
                s.train,
                s.test,
                s.organic,
                out.display()
            );
            Ok(())
        }
        Command::Bench {
            ml_root,
            image,
            iterations,
            output,
            dump_input,
        } => {
            let report = waste_model::bench::run(
                &ml_root,
                image.as_deref(),
                iterations,
                dump_input.as_deref(),
            )
            .context("failed to run the benchmark")?;
            match output {
                Output::Json => print_json(&report),
                Output::Text => {
                    println!("{report}");
                    Ok(())
                }
            }
        }
        Command::Evaluate {
            ml_root,
            data,
            output,
        } => {
            let model = load_model(&ml_root)?;
            let m = train::evaluate_dir(&model, &data, 2)
                .with_context(|| format!("failed to evaluate on {}", data.display()))?;
            match output {
                Output::Json => print_json(&m),
                Output::Text => {
                    let c = m.confusion_matrix;
                    println!(
                        "accuracy={:.4} precision={:.4} recall={:.4} f1={:.4} auc_roc={} loss={:.4} support={} tp={} tn={} fp={} fn={} synthetic={}",
                        m.accuracy, m.precision, m.recall, m.f1,
                        m.auc_roc.map_or("nan".into(), |a| format!("{a:.4}")),
                        m.loss, m.support, c.tp, c.tn, c.fp, c.fn_, m.dataset["synthetic"]
                    );
                    Ok(())
                }
            }
        }
    }
}

/// The `serve` subcommand: listen first (so the platform sees the port), load the model off the
/// async threads, then serve until SIGTERM or Ctrl-C.
fn run_serve(host: &str, port: u16, model_dir: PathBuf) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    rt.block_on(async move {
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .with_context(|| format!("failed to parse listen address {host}:{port}"))?;
        let model_id = std::env::var("MODEL_ID").ok().filter(|s| !s.is_empty());
        let server = start(addr, model_id)
            .await
            .with_context(|| format!("failed to listen on {addr}"))?;
        eprintln!("listening on {}", server.addr);
        let dir = model_dir.clone();
        let model = tokio::task::spawn_blocking(move || Model::load(&dir))
            .await
            .context("failed to join the model loader")?
            .with_context(|| format!("failed to load the model from {}", model_dir.display()))?;
        eprintln!(
            "model loaded: {} parameters, input {}x{}, id {}",
            model.net.param_count(),
            model.meta.input_size,
            model.meta.input_size,
            model.fingerprint_id()
        );
        server.set_model(model);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("failed to install the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => eprintln!("SIGTERM received: shutting down"),
            _ = tokio::signal::ctrl_c() => eprintln!("interrupt received: shutting down"),
        }
        server.stop().await;
        Ok(())
    })
}
