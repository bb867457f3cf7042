//! Who is calling. API Gateway's Cognito user-pool authorizer verifies the ID token and hands
//! its claims to this function under `requestContext.authorizer.claims`, every value a string;
//! this module owns reading them into a [`Caller`], the `approvers` group that may change the
//! pipeline, and the name a decision records as its actor. It checks no token itself: the
//! gateway has already refused a missing, forged or expired one, so the claims are trusted as
//! given, and their absence means the request did not come through a secured route.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use serde_json::{Map, Value};

/// The Cognito group whose members may change the pipeline (train, accept, reject, roll back,
/// subscribe). Everyone else signed in may read and predict.
pub const APPROVERS: &str = "approvers";

/// Why a request is refused before it is routed: answered as 401 or 403 (see `errors.rs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no signed-in user: the request carries no ID token claims")]
    NoClaims,
    #[error("the ID token's claims name no user: the sub claim is missing")]
    NoSubject,
    #[error(
        "{actor} may read but not change the pipeline: {operation} needs the {APPROVERS} group"
    )]
    NotApprover { actor: String, operation: String },
}

/// The signed-in user a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user pool's stable id for the user (`sub`).
    pub subject: String,
    pub email: Option<String>,
    /// `cognito:username`.
    pub username: Option<String>,
    /// `cognito:groups`, in the order the token lists them.
    pub groups: Vec<String>,
}

impl Caller {
    /// The caller named by the request's authorizer claims.
    pub fn from_request(req: &ApiGatewayProxyRequest) -> Result<Caller, AuthError> {
        match req.request_context.authorizer.fields.get("claims") {
            Some(Value::Object(claims)) => Caller::from_claims(claims),
            // Not what API Gateway sends, but a local gateway that serialised the claims
            // object into a string still means the same user.
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(claims)) => Caller::from_claims(&claims),
                _ => Err(AuthError::NoClaims),
            },
            _ => Err(AuthError::NoClaims),
        }
    }

    /// The caller named by an ID token's claims; `sub` is the one claim required.
    pub fn from_claims(claims: &Map<String, Value>) -> Result<Caller, AuthError> {
        if claims.is_empty() {
            return Err(AuthError::NoClaims);
        }
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let subject = text("sub").ok_or(AuthError::NoSubject)?;
        Ok(Caller {
            subject,
            email: text("email"),
            username: text("cognito:username"),
            groups: claims
                .get("cognito:groups")
                .map(parse_groups)
                .unwrap_or_default(),
        })
    }

    pub fn is_approver(&self) -> bool {
        self.groups.iter().any(|g| g == APPROVERS)
    }

    /// The name a decision records: the email people know each other by, else the user name,
    /// else the id every token has.
    pub fn actor(&self) -> &str {
        self.email
            .as_deref()
            .or(self.username.as_deref())
            .unwrap_or(&self.subject)
    }

    /// Ok for an approver; otherwise the 403 naming the operation refused.
    pub fn require_approver(&self, operation: impl Into<String>) -> Result<(), AuthError> {
        if self.is_approver() {
            Ok(())
        } else {
            Err(AuthError::NotApprover {
                actor: self.actor().to_string(),
                operation: operation.into(),
            })
        }
    }
}

/// The group names in a `cognito:groups` claim. API Gateway flattens the token's array into a
/// string whose form has varied: one name (`approvers`), comma-separated (`a,b`) or bracketed
/// and space-separated (`[a b]`); a JSON array, as a string or as a value, is read too. Group
/// names cannot contain whitespace, so splitting on commas and whitespace loses nothing.
pub fn parse_groups(raw: &Value) -> Vec<String> {
    let names: Vec<String> = match raw {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Value::String(s) => {
            let s = s.trim();
            match serde_json::from_str::<Vec<String>>(s) {
                Ok(items) => items,
                Err(_) => {
                    let inner = s
                        .strip_prefix('[')
                        .and_then(|rest| rest.strip_suffix(']'))
                        .unwrap_or(s);
                    inner
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .map(str::to_string)
                        .collect()
                }
            }
        }
        _ => Vec::new(),
    };
    names
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups(raw: Value) -> Vec<String> {
        parse_groups(&raw)
    }

    #[test]
    fn groups_arrive_in_every_form_api_gateway_uses() {
        assert_eq!(groups(json!("approvers")), ["approvers"]);
        assert_eq!(groups(json!("a,b")), ["a", "b"]);
        assert_eq!(groups(json!("a, b")), ["a", "b"]);
        assert_eq!(groups(json!("[a b]")), ["a", "b"]);
        assert_eq!(groups(json!("[approvers]")), ["approvers"]);
        assert_eq!(groups(json!("[a, b]")), ["a", "b"]);
        assert_eq!(groups(json!(["a", "b"])), ["a", "b"]);
        assert_eq!(groups(json!("[\"a\",\"b\"]")), ["a", "b"]);
        for none in [
            json!(""),
            json!("[]"),
            json!(" "),
            json!([]),
            json!(null),
            json!(7),
        ] {
            assert!(groups(none.clone()).is_empty(), "{none}");
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_actor_is_the_email_else_the_username_else_the_subject() {
        let c = Caller::from_claims(&claims(json!({
            "sub": "u-1", "email": "ana@example.com", "cognito:username": "ana",
            "cognito:groups": "readers,approvers", "email_verified": "true"
        })))
        .unwrap();
        assert_eq!(c.actor(), "ana@example.com");
        assert!(c.is_approver());
        let c =
            Caller::from_claims(&claims(json!({"sub": "u-1", "cognito:username": "ana"}))).unwrap();
        assert_eq!(c.actor(), "ana");
        assert!(!c.is_approver());
        let c = Caller::from_claims(&claims(json!({"sub": "u-1", "email": " "}))).unwrap();
        assert_eq!(c.actor(), "u-1");
    }

    #[test]
    fn only_the_exact_group_name_approves() {
        for g in ["Approvers", "approvers-old", "not-approvers", "[approver]"] {
            let c = Caller::from_claims(&claims(json!({"sub": "u", "cognito:groups": g}))).unwrap();
            assert!(!c.is_approver(), "{g}");
            assert!(matches!(
                c.require_approver("POST /api/training"),
                Err(AuthError::NotApprover { .. })
            ));
        }
    }

    #[test]
    fn a_request_without_a_user_is_refused() {
        let mut req = ApiGatewayProxyRequest::default();
        assert_eq!(Caller::from_request(&req), Err(AuthError::NoClaims));
        req.request_context
            .authorizer
            .fields
            .insert("claims".into(), json!({}));
        assert_eq!(Caller::from_request(&req), Err(AuthError::NoClaims));
        req.request_context
            .authorizer
            .fields
            .insert("claims".into(), json!({"email": "a@b.co"}));
        assert_eq!(Caller::from_request(&req), Err(AuthError::NoSubject));
        req.request_context.authorizer.fields.insert(
            "claims".into(),
            json!("{\"sub\":\"u\",\"cognito:groups\":\"approvers\"}"),
        );
        assert!(Caller::from_request(&req).unwrap().is_approver());
        req.request_context
            .authorizer
            .fields
            .insert("claims".into(), json!("not json"));
        assert_eq!(Caller::from_request(&req), Err(AuthError::NoClaims));
    }
}
