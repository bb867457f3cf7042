//! Lambda entry point of the `web` function: the embedded web app, served per request.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let site = web::Site::from_env(|k| std::env::var(k).ok());
    let site = &site;
    let serve = |e: LambdaEvent<ApiGatewayProxyRequest>| async move {
        Ok::<_, Error>(web::handle(site, &e.payload))
    };
    lambda_runtime::run(service_fn(serve)).await
}
