//! Lambda entry point of the `api` function: settings and clients once per cold start, then serve.

use api::{handle, App};
use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let app = &App::from_env().await?;
    let serve = |e: LambdaEvent<ApiGatewayProxyRequest>| async move {
        Ok::<_, Error>(handle(app, &e.payload).await)
    };
    lambda_runtime::run(service_fn(serve)).await
}
