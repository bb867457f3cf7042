//! Lambda entry point of `on-endpoint`: clients once per cold start, then serve events.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use pipeline_core::{pipeline::Pipeline, settings::Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let p = &Pipeline::from_env(Settings::from_env()?).await;
    lambda_runtime::run(service_fn(
        move |e: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(serde_json::to_value(
                on_endpoint::handle(p, &e.payload).await?,
            )?)
        },
    ))
    .await
}
