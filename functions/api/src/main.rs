//! Lambda entry point of the `api` function: settings once per cold start, then serve.

use api::{handle, Settings};
use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let settings = Settings::from_env();
    lambda_runtime::run(service_fn(|e: LambdaEvent<ApiGatewayProxyRequest>| {
        let out = handle(&settings, &e.payload);
        async move { Ok::<_, Error>(out) }
    }))
    .await
}
