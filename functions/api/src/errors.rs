//! The API's one error type and its one answer shape, `{ "error": { "code", "message", "fix" } }`.
//! Library errors from the pipeline map onto HTTP statuses here, in one place, so every route
//! answers the same status for the same cause; anything unexpected becomes a 500 whose body
//! names no internals (the details go to the function's log).

use pipeline_core::pipeline::PipelineError;
use pipeline_core::repo::RepoError;

use crate::auth::AuthError;

/// An error a route answers with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: i64,
    pub code: &'static str,
    pub message: String,
    pub fix: String,
    /// For a 405: the methods the path allows, answered in the Allow header.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(
        status: i64,
        code: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fix: fix.into(),
            allow: None,
        }
    }

    pub fn bad_request(message: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message, fix)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            404,
            "not_found",
            message,
            "list what exists with GET /api/models or GET /api/training",
        )
    }

    /// An unexpected failure. The cause is logged, never answered: it may name tables,
    /// buckets or account details.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        eprintln!("internal error: {cause}");
        Self::new(
            500,
            "internal",
            "the server failed to handle the request",
            "try again; if it keeps failing, the api function's log has the cause",
        )
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": { "code": self.code, "message": self.message, "fix": self.fix }
        })
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::NoClaims | AuthError::NoSubject => ApiError::new(
                401,
                "unauthorized",
                e.to_string(),
                "sign in to the web app, or send the ID token of a user from `deployer users add` in the Authorization header",
            ),
            AuthError::NotApprover { .. } => ApiError::new(
                403,
                "forbidden",
                e.to_string(),
                "ask an approver to run `deployer users add <email> --approver`",
            ),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound(what) => ApiError::not_found(format!("{what} does not exist")),
            // The conflict message names the model and both states: safe and useful to show.
            RepoError::Conflict { .. } => ApiError::new(
                409,
                "conflict",
                e.to_string(),
                "GET /api/models/{id} shows the model's state and which actions it allows",
            ),
            other => ApiError::internal(&other),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Repo(r) => r.into(),
            // Invalid is a record the request cannot act on (say, no artifact to deploy).
            PipelineError::Invalid(m) => ApiError::new(
                409,
                "conflict",
                m,
                "GET /api/models/{id} shows the model's state and lineage",
            ),
            PipelineError::Busy(m) => ApiError::new(
                409,
                "deployment_in_progress",
                m,
                "wait until GET /api/endpoint shows InService, then try again",
            ),
            other @ PipelineError::Aws { .. } => ApiError::internal(&other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_errors_map_to_statuses_without_leaking_internals() {
        let e: ApiError = RepoError::NotFound("model m1".into()).into();
        assert_eq!((e.status, e.code), (404, "not_found"));
        let e: ApiError = RepoError::Conflict {
            id: "m1".into(),
            expected: "staged".into(),
            current: "deployed".into(),
        }
        .into();
        assert_eq!(e.status, 409);
        assert!(e.message.contains("is deployed, not staged"), "{e}");
        let e: ApiError = PipelineError::Aws {
            action: "read",
            message: "AccessDenied: arn:aws:dynamodb:secret-table".into(),
        }
        .into();
        assert_eq!(e.status, 500);
        assert!(!e.body().to_string().contains("secret-table"));
    }
}
