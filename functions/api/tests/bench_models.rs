//! A measurement, not a check (ignored by default): `GET /api/models` with 100 versions,
//! in-process against moto, printing p50/p99 and what the storage query alone costs (moto's
//! DynamoDB dominates: measured ~135 ms of ~142 ms p50 in a debug build). Run with
//! `cargo test -p api --test bench_models -- --ignored --nocapture`.
//! The target is a p99 of at most 20 ms on the local cloud.

mod common;

use std::time::Instant;

use api::handle;
use aws_lambda_events::http::Method;
use common::{req, world};
use pipeline_core::status::ModelStatus;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run it explicitly"]
async fn list_models_with_100_versions() {
    let w = world().await;
    for i in 0..100 {
        w.seed(
            &format!("m-{i:03}"),
            ModelStatus::Staged,
            &format!("2026-11-{:02}T00:{:02}:00Z", 1 + i / 60, i % 60),
        )
        .await;
    }
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let r = handle(&w.app, &req(Method::GET, "/api/models", None)).await;
        times.push(t.elapsed());
        assert_eq!(r.status_code, 200);
    }
    // The same query without the API around it: what the storage (moto here) costs.
    let mut store = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        assert_eq!(w.app.pipeline.repo.list_models().await.unwrap().len(), 100);
        store.push(t.elapsed());
    }
    store.sort();
    println!("repo.list_models alone: p50 {:?}", store[store.len() / 2]);
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "GET /api/models, 100 versions, 200 requests: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        times[times.len() - 1]
    );
}
