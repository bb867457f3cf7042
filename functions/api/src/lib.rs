//! The pipeline's REST API as one Lambda function behind API Gateway's proxy integration
//! (payload version 1), described by `openapi.yaml` beside this crate's manifest. Routing is
//! an async function from the proxy request to the proxy response over [`App`]'s clients, so
//! every route is tested in-process against moto; `main.rs` only hands it to the runtime.
//!
//! Every route but `GET /api/health` needs a signed-in user (API Gateway's Cognito authorizer
//! passes the ID token's claims, read by [`auth`]); changes need the `approvers` group.
//!
//! Every error answers `{ "error": { "code", "message", "fix" } }`.

pub mod auth;
pub mod errors;
pub mod predict;
pub mod routes;

pub use auth::Caller;
pub use errors::ApiError;
pub use routes::{error_response, handle, App};
