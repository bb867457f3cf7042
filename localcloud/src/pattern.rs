//! EventBridge event patterns: parsing a rule's `EventPattern` JSON into a [`Pattern`] and
//! deciding whether an event matches it, with AWS's content-filtering semantics (exact values,
//! `prefix`, `suffix`, `equals-ignore-case`, `anything-but`, `numeric`, `exists`, `wildcard`,
//! `cidr` and `$or`). Bad patterns are rejected at parse time, as `PutRule` would reject them,
//! so a rule that works here is a rule AWS accepts.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Value};

/// A parsed EventBridge event pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    root: ObjectPattern,
}

/// Why an event pattern was rejected. `path` is the dotted location of the bad part inside the
/// pattern, e.g. `detail.object.key`, or `(root)` for the pattern itself.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("event pattern is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event pattern must be a JSON object, got {found}")]
    NotAnObject { found: &'static str },
    #[error("event pattern at {path}: unknown operator \"{operator}\"")]
    UnknownOperator { path: String, operator: String },
    #[error("event pattern at {path}: {message}")]
    Invalid { path: String, message: String },
}

impl Pattern {
    /// Parses an `EventPattern` document.
    pub fn parse(json: &str) -> Result<Pattern, PatternError> {
        let value: Value = serde_json::from_str(json)?;
        let Value::Object(map) = &value else {
            return Err(PatternError::NotAnObject {
                found: kind(&value),
            });
        };
        Ok(Pattern {
            root: ObjectPattern::parse(map, &Path::root())?,
        })
    }

    /// Whether `event` (the whole event envelope, `source`, `detail-type`, `detail`, ...)
    /// matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(Some(event))
    }
}

/// One level of a pattern: every field must match, and every `$or` must have at least one
/// matching alternative.
#[derive(Debug, Clone)]
struct ObjectPattern {
    fields: Vec<(String, FieldPattern)>,
    any_of: Vec<ObjectPattern>,
}

#[derive(Debug, Clone)]
enum FieldPattern {
    Nested(ObjectPattern),
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(Scalar),
    Prefix(Text),
    Suffix(Text),
    EqualsIgnoreCase(String),
    AnythingBut(AnythingBut),
    Numeric(Vec<(NumericOp, f64)>),
    Exists(bool),
    Wildcard(Wildcard),
    Cidr(Cidr),
}

#[derive(Debug, Clone)]
enum Scalar {
    String(String),
    Number(f64),
    Bool(bool),
    Null,
}

/// A string operand that is compared either exactly or case-insensitively (the nested
/// `{"prefix": {"equals-ignore-case": ".."}}` form). Case-insensitive operands are stored
/// already lowercased so matching lowercases only the event side.
#[derive(Debug, Clone)]
struct Text {
    value: String,
    ignore_case: bool,
}

#[derive(Debug, Clone)]
enum AnythingBut {
    Values(Vec<Scalar>),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(Vec<String>),
    Wildcard(Vec<Wildcard>),
}

#[derive(Debug, Clone, Copy)]
enum NumericOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A wildcard pattern split at its unescaped `*`s: n segments means n - 1 stars.
#[derive(Debug, Clone)]
struct Wildcard {
    segments: Vec<String>,
}

#[derive(Debug, Clone)]
struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Dotted location inside the pattern, carried through parsing only for error messages.
#[derive(Clone)]
struct Path(String);

impl Path {
    fn root() -> Path {
        Path(String::new())
    }

    fn child(&self, key: &str) -> Path {
        if self.0.is_empty() {
            Path(key.to_owned())
        } else {
            Path(format!("{}.{key}", self.0))
        }
    }

    fn invalid(&self, message: impl Into<String>) -> PatternError {
        PatternError::Invalid {
            path: self.to_string(),
            message: message.into(),
        }
    }

    fn unknown(&self, operator: &str) -> PatternError {
        PatternError::UnknownOperator {
            path: self.to_string(),
            operator: operator.to_owned(),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(root)")
        } else {
            f.write_str(&self.0)
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl ObjectPattern {
    fn parse(map: &Map<String, Value>, path: &Path) -> Result<ObjectPattern, PatternError> {
        // AWS rejects empty objects; accepting one here would make a rule match everything
        // locally that cannot even be created in a real account.
        if map.is_empty() {
            return Err(path.invalid("empty objects are not allowed"));
        }
        let mut fields = Vec::new();
        let mut any_of = Vec::new();
        for (key, value) in map {
            let child = path.child(key);
            if key == "$or" {
                any_of = parse_or(value, &child)?;
                continue;
            }
            let field = match value {
                Value::Object(inner) => FieldPattern::Nested(ObjectPattern::parse(inner, &child)?),
                Value::Array(items) => FieldPattern::Leaf(parse_leaf_list(items, &child)?),
                other => {
                    return Err(child.invalid(format!(
                        "expected an array of allowed values or a nested object, got {}",
                        kind(other)
                    )))
                }
            };
            fields.push((key.clone(), field));
        }
        Ok(ObjectPattern { fields, any_of })
    }

    fn matches(&self, event: Option<&Value>) -> bool {
        let mut candidates = Vec::new();
        if let Some(value) = event {
            collect_objects(value, &mut candidates);
        }
        if candidates.is_empty() {
            // No object here at all: still evaluated, because a pattern made only of
            // `{"exists": false}` tests matches an absent parent.
            return self.matches_object(None);
        }
        candidates
            .into_iter()
            .any(|object| self.matches_object(Some(object)))
    }

    fn matches_object(&self, object: Option<&Map<String, Value>>) -> bool {
        let fields_match = self.fields.iter().all(|(key, field)| {
            let value = object.and_then(|o| o.get(key));
            match field {
                FieldPattern::Nested(nested) => nested.matches(value),
                FieldPattern::Leaf(matchers) => leaf_matches(matchers, value),
            }
        });
        fields_match
            && (self.any_of.is_empty() || self.any_of.iter().any(|alt| alt.matches_object(object)))
    }
}

fn parse_or(value: &Value, path: &Path) -> Result<Vec<ObjectPattern>, PatternError> {
    let Value::Array(items) = value else {
        return Err(path.invalid(format!(
            "$or must be an array of pattern objects, got {}",
            kind(value)
        )));
    };
    if items.len() < 2 {
        return Err(path.invalid("$or needs at least two alternatives"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_path = path.child(&i.to_string());
            match item {
                Value::Object(map) => ObjectPattern::parse(map, &item_path),
                other => Err(item_path.invalid(format!(
                    "$or alternatives must be objects, got {}",
                    kind(other)
                ))),
            }
        })
        .collect()
}

/// Arrays in the event are flattened (at any depth) because AWS matches a pattern against an
/// array when any element matches.
fn collect_objects<'a>(value: &'a Value, out: &mut Vec<&'a Map<String, Value>>) {
    match value {
        Value::Object(map) => out.push(map),
        Value::Array(items) => items.iter().for_each(|item| collect_objects(item, out)),
        _ => {}
    }
}

fn collect_leaves<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_leaves(item, out)),
        // AWS matches values only at leaves; an object where a value list is expected
        // never matches (not even `exists: true`).
        Value::Object(_) => {}
        leaf => out.push(leaf),
    }
}

fn leaf_matches(matchers: &[Matcher], value: Option<&Value>) -> bool {
    let mut leaves = Vec::new();
    if let Some(value) = value {
        collect_leaves(value, &mut leaves);
    }
    matchers.iter().any(|matcher| match matcher {
        Matcher::Exists(expected) => leaves.is_empty() != *expected,
        other => leaves.iter().any(|leaf| other.matches_leaf(leaf)),
    })
}

fn parse_leaf_list(items: &[Value], path: &Path) -> Result<Vec<Matcher>, PatternError> {
    if items.is_empty() {
        return Err(path.invalid("empty arrays are not allowed; list at least one value"));
    }
    items
        .iter()
        .map(|item| match item {
            Value::Object(map) => parse_operator(map, path),
            Value::Array(_) => Err(path.invalid("nested arrays are not allowed in a value list")),
            scalar => Ok(Matcher::Exact(parse_scalar(scalar, path)?)),
        })
        .collect()
}

fn parse_scalar(value: &Value, path: &Path) -> Result<Scalar, PatternError> {
    match value {
        Value::String(s) => Ok(Scalar::String(s.clone())),
        Value::Number(n) => Ok(Scalar::Number(number(n, path)?)),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Null => Ok(Scalar::Null),
        other => Err(path.invalid(format!("expected a plain value, got {}", kind(other)))),
    }
}

fn number(n: &serde_json::Number, path: &Path) -> Result<f64, PatternError> {
    n.as_f64()
        .ok_or_else(|| path.invalid(format!("number {n} is out of range")))
}

fn parse_operator(map: &Map<String, Value>, path: &Path) -> Result<Matcher, PatternError> {
    let mut entries = map.iter();
    let (Some((name, operand)), None) = (entries.next(), entries.next()) else {
        return Err(path.invalid(format!(
            "an operator object must have exactly one key, got {}",
            map.len()
        )));
    };
    let op_path = path.child(name);
    match name.as_str() {
        "prefix" => Ok(Matcher::Prefix(parse_text(operand, &op_path)?)),
        "suffix" => Ok(Matcher::Suffix(parse_text(operand, &op_path)?)),
        "equals-ignore-case" => Ok(Matcher::EqualsIgnoreCase(
            string_operand(operand, &op_path)?.to_lowercase(),
        )),
        "anything-but" => Ok(Matcher::AnythingBut(parse_anything_but(operand, &op_path)?)),
        "numeric" => Ok(Matcher::Numeric(parse_numeric(operand, &op_path)?)),
        "exists" => match operand {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            other => Err(op_path.invalid(format!("expected true or false, got {}", kind(other)))),
        },
        "wildcard" => Ok(Matcher::Wildcard(parse_wildcard(operand, &op_path)?)),
        "cidr" => Ok(Matcher::Cidr(parse_cidr(operand, &op_path)?)),
        other => Err(path.unknown(other)),
    }
}

fn string_operand<'a>(value: &'a Value, path: &Path) -> Result<&'a str, PatternError> {
    value
        .as_str()
        .ok_or_else(|| path.invalid(format!("expected a string, got {}", kind(value))))
}

/// `"x"` or `{"equals-ignore-case": "x"}`, the two operand forms of `prefix` and `suffix`.
fn parse_text(value: &Value, path: &Path) -> Result<Text, PatternError> {
    match value {
        Value::String(s) => Ok(Text {
            value: s.clone(),
            ignore_case: false,
        }),
        Value::Object(map) => {
            let mut entries = map.iter();
            match (entries.next(), entries.next()) {
                (Some((name, operand)), None) if name == "equals-ignore-case" => Ok(Text {
                    value: string_operand(operand, &path.child(name))?.to_lowercase(),
                    ignore_case: true,
                }),
                (Some((name, _)), None) => Err(path.unknown(name)),
                _ => Err(path.invalid(
                    "expected a string or {\"equals-ignore-case\": \"...\"} with exactly one key",
                )),
            }
        }
        other => Err(path.invalid(format!("expected a string, got {}", kind(other)))),
    }
}

fn parse_anything_but(value: &Value, path: &Path) -> Result<AnythingBut, PatternError> {
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(path.invalid("anything-but needs at least one value"));
            }
            let values = items
                .iter()
                .map(|item| match item {
                    Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => {
                        parse_scalar(item, path)
                    }
                    other => Err(path.invalid(format!(
                        "anything-but lists may hold only plain values, got {}",
                        kind(other)
                    ))),
                })
                .collect::<Result<_, _>>()?;
            Ok(AnythingBut::Values(values))
        }
        Value::Object(map) => {
            let mut entries = map.iter();
            let (Some((name, operand)), None) = (entries.next(), entries.next()) else {
                return Err(path.invalid(format!(
                    "an anything-but operator object must have exactly one key, got {}",
                    map.len()
                )));
            };
            let op_path = path.child(name);
            match name.as_str() {
                "prefix" => Ok(AnythingBut::Prefix(
                    string_operand(operand, &op_path)?.to_owned(),
                )),
                "suffix" => Ok(AnythingBut::Suffix(
                    string_operand(operand, &op_path)?.to_owned(),
                )),
                "equals-ignore-case" => Ok(AnythingBut::EqualsIgnoreCase(one_or_many(
                    operand,
                    &op_path,
                    |v, p| Ok(string_operand(v, p)?.to_lowercase()),
                )?)),
                "wildcard" => Ok(AnythingBut::Wildcard(one_or_many(
                    operand,
                    &op_path,
                    parse_wildcard,
                )?)),
                other => Err(path.unknown(other)),
            }
        }
        scalar => Ok(AnythingBut::Values(vec![parse_scalar(scalar, path)?])),
    }
}

fn one_or_many<T>(
    value: &Value,
    path: &Path,
    parse: impl Fn(&Value, &Path) -> Result<T, PatternError>,
) -> Result<Vec<T>, PatternError> {
    match value {
        Value::Array(items) if items.is_empty() => Err(path.invalid("needs at least one value")),
        Value::Array(items) => items.iter().map(|item| parse(item, path)).collect(),
        single => Ok(vec![parse(single, path)?]),
    }
}

fn parse_numeric(value: &Value, path: &Path) -> Result<Vec<(NumericOp, f64)>, PatternError> {
    const EXAMPLE: &str = "e.g. [\">\", 0, \"<=\", 5]";
    let Value::Array(items) = value else {
        return Err(path.invalid(format!(
            "expected an array of operator/number pairs, {EXAMPLE}"
        )));
    };
    if items.is_empty() || items.len() % 2 != 0 {
        return Err(path.invalid(format!(
            "expected operator/number pairs, got {} items, {EXAMPLE}",
            items.len()
        )));
    }
    items
        .chunks_exact(2)
        .map(|pair| {
            let op = match pair[0].as_str() {
                Some("=") => NumericOp::Eq,
                Some("<") => NumericOp::Lt,
                Some("<=") => NumericOp::Le,
                Some(">") => NumericOp::Gt,
                Some(">=") => NumericOp::Ge,
                _ => {
                    return Err(path.invalid(format!(
                        "{} is not a comparison; use one of =, <, <=, >, >=",
                        pair[0]
                    )))
                }
            };
            let Value::Number(n) = &pair[1] else {
                return Err(path.invalid(format!(
                    "{} must be followed by a number, got {}",
                    pair[0],
                    kind(&pair[1])
                )));
            };
            Ok((op, number(n, path)?))
        })
        .collect()
}

fn parse_wildcard(value: &Value, path: &Path) -> Result<Wildcard, PatternError> {
    let text = string_operand(value, path)?;
    let mut segments = vec![String::new()];
    let mut chars = text.chars();
    let mut previous_was_star = false;
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                // AWS rejects `**`: it means nothing more than `*` and suggests a typo.
                if previous_was_star {
                    return Err(
                        path.invalid(format!("wildcard {text:?} has consecutive '*' characters"))
                    );
                }
                segments.push(String::new());
                previous_was_star = true;
                continue;
            }
            '\\' => match chars.next() {
                Some(escaped @ ('*' | '\\')) => push_char(&mut segments, escaped),
                _ => {
                    return Err(path.invalid(format!(
                        "wildcard {text:?}: '\\' may only escape '*' or '\\'"
                    )))
                }
            },
            other => push_char(&mut segments, other),
        }
        previous_was_star = false;
    }
    Ok(Wildcard { segments })
}

fn push_char(segments: &mut [String], c: char) {
    if let Some(last) = segments.last_mut() {
        last.push(c);
    }
}

fn parse_cidr(value: &Value, path: &Path) -> Result<Cidr, PatternError> {
    let text = string_operand(value, path)?;
    let bad = || path.invalid(format!("{text:?} is not a CIDR block like 10.0.0.0/24"));
    let (address, length) = text.split_once('/').ok_or_else(bad)?;
    let network: IpAddr = address.parse().map_err(|_| bad())?;
    let prefix_len: u8 = length.parse().map_err(|_| bad())?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(bad());
    }
    Ok(Cidr {
        network,
        prefix_len,
    })
}

impl Matcher {
    fn matches_leaf(&self, leaf: &Value) -> bool {
        match self {
            Matcher::Exact(expected) => expected.matches(leaf),
            Matcher::Prefix(text) => leaf.as_str().is_some_and(|s| text.is_prefix_of(s)),
            Matcher::Suffix(text) => leaf.as_str().is_some_and(|s| text.is_suffix_of(s)),
            Matcher::EqualsIgnoreCase(expected) => {
                leaf.as_str().is_some_and(|s| s.to_lowercase() == *expected)
            }
            Matcher::AnythingBut(excluded) => excluded.allows(leaf),
            Matcher::Numeric(conditions) => leaf.as_f64().is_some_and(|n| {
                conditions.iter().all(|(op, bound)| match op {
                    NumericOp::Eq => n == *bound,
                    NumericOp::Lt => n < *bound,
                    NumericOp::Le => n <= *bound,
                    NumericOp::Gt => n > *bound,
                    NumericOp::Ge => n >= *bound,
                })
            }),
            // Handled by `leaf_matches`, which looks at the field rather than one leaf.
            Matcher::Exists(_) => false,
            Matcher::Wildcard(wildcard) => leaf.as_str().is_some_and(|s| wildcard.matches(s)),
            Matcher::Cidr(cidr) => leaf.as_str().is_some_and(|s| cidr.contains(s)),
        }
    }
}

impl Scalar {
    fn matches(&self, leaf: &Value) -> bool {
        match (self, leaf) {
            (Scalar::String(expected), Value::String(actual)) => expected == actual,
            (Scalar::Number(expected), Value::Number(actual)) => {
                actual.as_f64().is_some_and(|a| a == *expected)
            }
            (Scalar::Bool(expected), Value::Bool(actual)) => expected == actual,
            (Scalar::Null, Value::Null) => true,
            _ => false,
        }
    }
}

impl Text {
    fn is_prefix_of(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().starts_with(&self.value)
        } else {
            s.starts_with(&self.value)
        }
    }

    fn is_suffix_of(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().ends_with(&self.value)
        } else {
            s.ends_with(&self.value)
        }
    }
}

impl AnythingBut {
    fn allows(&self, leaf: &Value) -> bool {
        match self {
            AnythingBut::Values(values) => !values.iter().any(|v| v.matches(leaf)),
            // The string forms say nothing about non-string values, and AWS does not match
            // them: `{"anything-but": {"prefix": "x"}}` never matches a number.
            AnythingBut::Prefix(prefix) => leaf.as_str().is_some_and(|s| !s.starts_with(prefix)),
            AnythingBut::Suffix(suffix) => leaf.as_str().is_some_and(|s| !s.ends_with(suffix)),
            AnythingBut::EqualsIgnoreCase(values) => leaf.as_str().is_some_and(|s| {
                let lower = s.to_lowercase();
                !values.contains(&lower)
            }),
            AnythingBut::Wildcard(wildcards) => leaf
                .as_str()
                .is_some_and(|s| !wildcards.iter().any(|w| w.matches(s))),
        }
    }
}

impl Wildcard {
    fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.segments.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        if text.len() < first.len() + last.len()
            || !text.starts_with(first.as_str())
            || !text.ends_with(last.as_str())
        {
            return false;
        }
        // Leftmost matching of each middle segment is optimal for `*`-only globs: taking the
        // earliest occurrence leaves the most text for the segments after it.
        let mut remaining = &text[first.len()..text.len() - last.len()];
        for segment in middle {
            match remaining.find(segment.as_str()) {
                Some(at) => remaining = &remaining[at + segment.len()..],
                None => return false,
            }
        }
        true
    }
}

impl Cidr {
    fn contains(&self, text: &str) -> bool {
        let Ok(address) = text.parse::<IpAddr>() else {
            return false;
        };
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => prefix_equal(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(addr)) << 96,
                self.prefix_len,
            ),
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                prefix_equal(u128::from(net), u128::from(addr), self.prefix_len)
            }
            _ => false,
        }
    }
}

/// Compares the top `len` bits; IPv4 addresses arrive shifted into the top 32 bits.
fn prefix_equal(a: u128, b: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn s3_object_created(key: &str) -> Value {
        json!({
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created",
            "source": "aws.s3",
            "account": "123456789012",
            "time": "2026-11-28T10:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:s3:::wastesort-local-data-123"],
            "detail": {
                "version": "0",
                "bucket": {"name": "wastesort-local-data-123"},
                "object": {
                    "key": key,
                    "size": 120,
                    "etag": "abc",
                    "sequencer": "00A1",
                    "version-id": "v1"
                },
                "request-id": "N4N7GDK58NMKJ12R",
                "requester": "123456789012",
                "reason": "PutObject"
            }
        })
    }

    fn training_state_change(name: &str, status: &str) -> Value {
        json!({
            "version": "0",
            "id": "0b1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f",
            "detail-type": "SageMaker Training Job State Change",
            "source": "aws.sagemaker",
            "account": "123456789012",
            "time": "2026-11-28T11:00:00Z",
            "region": "us-east-1",
            "resources": [format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}")],
            "detail": {
                "TrainingJobName": name,
                "TrainingJobArn": format!("arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"),
                "TrainingJobStatus": status,
                "SecondaryStatus": status,
                "HyperParameters": {"epochs": "10"},
                "BillableTimeInSeconds": 431,
                "RoleArn": "arn:aws:iam::123456789012:role/wastesort-training"
            }
        })
    }

    fn pattern(json: &str) -> Pattern {
        Pattern::parse(json).unwrap()
    }

    fn field(pattern_list: &str, detail: Value) -> bool {
        pattern(&format!(r#"{{"detail":{{"f":{pattern_list}}}}}"#))
            .matches(&json!({"detail": detail}))
    }

    fn error(json: &str) -> String {
        Pattern::parse(json).unwrap_err().to_string()
    }

    const READY_MARKER: &str = r#"{
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": ["wastesort-local-data-123"]},
            "object": {"key": [{"suffix": "/_READY"}]}
        }
    }"#;

    #[test]
    fn s3_ready_marker_matches() {
        let event = s3_object_created("datasets/20261128T100000Z/_READY");
        assert!(pattern(READY_MARKER).matches(&event));
    }

    #[test]
    fn s3_image_upload_does_not_match_ready_marker() {
        let event = s3_object_created("datasets/20261128T100000Z/images/glass/0001.jpg");
        assert!(!pattern(READY_MARKER).matches(&event));
    }

    #[test]
    fn s3_other_bucket_or_source_does_not_match() {
        let mut event = s3_object_created("datasets/x/_READY");
        event["detail"]["bucket"]["name"] = json!("someone-elses-bucket");
        assert!(!pattern(READY_MARKER).matches(&event));
        let mut event = s3_object_created("datasets/x/_READY");
        event["source"] = json!("aws.s3-lookalike");
        assert!(!pattern(READY_MARKER).matches(&event));
    }

    #[test]
    fn missing_nested_field_does_not_match() {
        let mut event = s3_object_created("datasets/x/_READY");
        event["detail"].as_object_mut().unwrap().remove("object");
        assert!(!pattern(READY_MARKER).matches(&event));
    }

    const TRAINING_DONE: &str = r#"{
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Training Job State Change"],
        "detail": {
            "TrainingJobStatus": ["Completed", "Failed", "Stopped"],
            "TrainingJobName": [{"prefix": "wastesort-"}]
        }
    }"#;

    #[test]
    fn sagemaker_training_state_change() {
        let p = pattern(TRAINING_DONE);
        assert!(p.matches(&training_state_change(
            "wastesort-20261128-1100",
            "Completed"
        )));
        assert!(p.matches(&training_state_change("wastesort-20261128-1100", "Failed")));
        assert!(!p.matches(&training_state_change(
            "wastesort-20261128-1100",
            "InProgress"
        )));
        assert!(!p.matches(&training_state_change("other-job", "Completed")));
    }

    #[test]
    fn prefix_ignore_case_and_suffix_ignore_case() {
        let p = r#"[{"prefix": {"equals-ignore-case": "WasteSort-"}}]"#;
        assert!(field(p, json!({"f": "wastesort-job"})));
        assert!(field(p, json!({"f": "WASTESORT-job"})));
        assert!(!field(p, json!({"f": "job-wastesort-"})));
        let p = r#"[{"suffix": {"equals-ignore-case": ".JPG"}}]"#;
        assert!(field(p, json!({"f": "a/b.jpg"})));
        assert!(!field(p, json!({"f": "a/b.png"})));
    }

    #[test]
    fn plain_prefix_is_case_sensitive() {
        assert!(!field(
            r#"[{"prefix": "Waste"}]"#,
            json!({"f": "wastesort"})
        ));
    }

    #[test]
    fn exact_values_by_type() {
        assert!(field("[5]", json!({"f": 5.0})));
        assert!(field("[5.0]", json!({"f": 5})));
        assert!(!field("[5]", json!({"f": "5"})));
        assert!(!field(r#"["5"]"#, json!({"f": 5})));
        assert!(field("[true]", json!({"f": true})));
        assert!(!field("[true]", json!({"f": "true"})));
        assert!(field("[null]", json!({"f": null})));
        assert!(!field("[null]", json!({})));
    }

    #[test]
    fn equals_ignore_case() {
        let p = r#"[{"equals-ignore-case": "PutObject"}]"#;
        assert!(field(p, json!({"f": "putobject"})));
        assert!(field(p, json!({"f": "PUTOBJECT"})));
        assert!(!field(p, json!({"f": "PutObjectAcl"})));
    }

    #[test]
    fn anything_but_single_value() {
        let p = r#"[{"anything-but": "InProgress"}]"#;
        assert!(field(p, json!({"f": "Completed"})));
        assert!(!field(p, json!({"f": "InProgress"})));
        // anything-but still requires the field to be there.
        assert!(!field(p, json!({})));
        assert!(field(r#"[{"anything-but": 0}]"#, json!({"f": 1})));
        assert!(!field(r#"[{"anything-but": 0}]"#, json!({"f": 0.0})));
    }

    #[test]
    fn anything_but_list() {
        let p = r#"[{"anything-but": ["InProgress", "Stopping"]}]"#;
        assert!(field(p, json!({"f": "Completed"})));
        assert!(!field(p, json!({"f": "InProgress"})));
        assert!(!field(p, json!({"f": "Stopping"})));
    }

    #[test]
    fn anything_but_prefix_and_suffix() {
        let p = r#"[{"anything-but": {"prefix": "tmp/"}}]"#;
        assert!(field(p, json!({"f": "datasets/a"})));
        assert!(!field(p, json!({"f": "tmp/a"})));
        assert!(!field(p, json!({"f": 3})));
        let p = r#"[{"anything-but": {"suffix": ".tmp"}}]"#;
        assert!(field(p, json!({"f": "a.jpg"})));
        assert!(!field(p, json!({"f": "a.tmp"})));
    }

    #[test]
    fn anything_but_ignore_case_and_wildcard() {
        let p = r#"[{"anything-but": {"equals-ignore-case": ["failed", "STOPPED"]}}]"#;
        assert!(field(p, json!({"f": "Completed"})));
        assert!(!field(p, json!({"f": "Failed"})));
        assert!(!field(p, json!({"f": "stopped"})));
        let p = r#"[{"anything-but": {"wildcard": "*/tmp/*"}}]"#;
        assert!(field(p, json!({"f": "a/b/c"})));
        assert!(!field(p, json!({"f": "a/tmp/c"})));
    }

    #[test]
    fn numeric_ranges() {
        let p = r#"[{"numeric": [">", 0, "<=", 5]}]"#;
        assert!(!field(p, json!({"f": 0})));
        assert!(field(p, json!({"f": 0.001})));
        assert!(field(p, json!({"f": 5})));
        assert!(!field(p, json!({"f": 5.5})));
        assert!(!field(p, json!({"f": "3"})));
        assert!(field(r#"[{"numeric": ["=", 120]}]"#, json!({"f": 120.0})));
        assert!(field(
            r#"[{"numeric": [">=", 10, "<", 20]}]"#,
            json!({"f": 10})
        ));
        assert!(!field(
            r#"[{"numeric": [">=", 10, "<", 20]}]"#,
            json!({"f": 20})
        ));
        assert!(field(r#"[{"numeric": ["<", -1.5]}]"#, json!({"f": -2})));
    }

    #[test]
    fn numeric_on_real_event() {
        let p = pattern(r#"{"detail": {"object": {"size": [{"numeric": [">", 100]}]}}}"#);
        assert!(p.matches(&s3_object_created("k")));
        let p = pattern(r#"{"detail": {"object": {"size": [{"numeric": [">", 1000]}]}}}"#);
        assert!(!p.matches(&s3_object_created("k")));
    }

    #[test]
    fn exists_true_and_false() {
        let present = r#"[{"exists": true}]"#;
        let absent = r#"[{"exists": false}]"#;
        assert!(field(present, json!({"f": "x"})));
        assert!(field(present, json!({"f": null})));
        assert!(!field(present, json!({})));
        assert!(!field(absent, json!({"f": "x"})));
        assert!(field(absent, json!({})));
        // Only leaves exist, as in AWS.
        assert!(!field(present, json!({"f": {"inner": 1}})));
        assert!(!field(present, json!({"f": []})));
        assert!(field(absent, json!({"f": []})));
    }

    #[test]
    fn exists_false_matches_when_parent_is_missing() {
        let p = pattern(r#"{"detail": {"error": {"code": [{"exists": false}]}}}"#);
        assert!(p.matches(&s3_object_created("k")));
        let p = pattern(r#"{"detail": {"object": {"version-id": [{"exists": false}]}}}"#);
        assert!(!p.matches(&s3_object_created("k")));
    }

    #[test]
    fn event_arrays_match_if_any_element_matches() {
        let p = pattern(r#"{"resources": ["arn:aws:s3:::wastesort-local-data-123"]}"#);
        let mut event = s3_object_created("k");
        assert!(p.matches(&event));
        event["resources"] = json!([
            "arn:aws:s3:::other",
            "arn:aws:s3:::wastesort-local-data-123"
        ]);
        assert!(p.matches(&event));
        event["resources"] = json!(["arn:aws:s3:::other"]);
        assert!(!p.matches(&event));
        event["resources"] = json!([]);
        assert!(!p.matches(&event));
        assert!(field(r#"[{"prefix": "b"}]"#, json!({"f": ["a", "bc"]})));
        assert!(field(
            r#"[{"numeric": [">", 3]}]"#,
            json!({"f": [1, [2, 4]]})
        ));
    }

    #[test]
    fn arrays_of_objects_match_per_element() {
        let p = pattern(r#"{"detail": {"items": {"kind": ["glass"], "count": [2]}}}"#);
        let matching = json!({"detail": {"items": [
            {"kind": "paper", "count": 1},
            {"kind": "glass", "count": 2}
        ]}});
        let split = json!({"detail": {"items": [
            {"kind": "glass", "count": 1},
            {"kind": "paper", "count": 2}
        ]}});
        assert!(p.matches(&matching));
        assert!(!p.matches(&split));
    }

    #[test]
    fn or_at_top_level() {
        let p = pattern(
            r#"{
                "$or": [
                    {"source": ["aws.s3"], "detail": {"object": {"key": [{"suffix": "/_READY"}]}}},
                    {"source": ["aws.sagemaker"]}
                ]
            }"#,
        );
        assert!(p.matches(&s3_object_created("datasets/a/_READY")));
        assert!(!p.matches(&s3_object_created("datasets/a/img.jpg")));
        assert!(p.matches(&training_state_change("wastesort-1", "Completed")));
        assert!(!p.matches(&json!({"source": "aws.lambda"})));
    }

    #[test]
    fn or_nested_and_combined_with_fields() {
        let p = pattern(
            r#"{
                "source": ["aws.sagemaker"],
                "detail": {
                    "$or": [
                        {"TrainingJobStatus": ["Failed"]},
                        {"BillableTimeInSeconds": [{"numeric": [">", 3600]}]}
                    ]
                }
            }"#,
        );
        assert!(p.matches(&training_state_change("j", "Failed")));
        assert!(!p.matches(&training_state_change("j", "Completed")));
        let mut long = training_state_change("j", "Completed");
        long["detail"]["BillableTimeInSeconds"] = json!(7200);
        assert!(p.matches(&long));
        let mut other_source = training_state_change("j", "Failed");
        other_source["source"] = json!("aws.s3");
        assert!(!p.matches(&other_source));
    }

    #[test]
    fn wildcard() {
        let p = r#"[{"wildcard": "datasets/*/_READY"}]"#;
        assert!(field(p, json!({"f": "datasets/20261128T100000Z/_READY"})));
        assert!(field(p, json!({"f": "datasets//_READY"})));
        assert!(!field(p, json!({"f": "datasets/x/images/a.jpg"})));
        assert!(!field(p, json!({"f": "other/x/_READY"})));
        let p = r#"[{"wildcard": "*a*b*"}]"#;
        assert!(field(p, json!({"f": "xxaxxbxx"})));
        assert!(field(p, json!({"f": "ab"})));
        assert!(!field(p, json!({"f": "ba"})));
        let p = r#"[{"wildcard": "ab*ba"}]"#;
        assert!(!field(p, json!({"f": "aba"})));
        assert!(field(p, json!({"f": "abba"})));
        let p = r#"[{"wildcard": "literal\\*star"}]"#;
        assert!(field(p, json!({"f": "literal*star"})));
        assert!(!field(p, json!({"f": "literalXstar"})));
        assert!(field(r#"[{"wildcard": "exact"}]"#, json!({"f": "exact"})));
        assert!(!field(
            r#"[{"wildcard": "exact"}]"#,
            json!({"f": "exactly"})
        ));
    }

    #[test]
    fn cidr() {
        let p = r#"[{"cidr": "10.0.0.0/24"}]"#;
        assert!(field(p, json!({"f": "10.0.0.17"})));
        assert!(!field(p, json!({"f": "10.0.1.17"})));
        assert!(!field(p, json!({"f": "not an ip"})));
        assert!(!field(p, json!({"f": "::1"})));
        assert!(field(
            r#"[{"cidr": "0.0.0.0/0"}]"#,
            json!({"f": "192.0.2.1"})
        ));
        assert!(field(
            r#"[{"cidr": "2001:db8::/32"}]"#,
            json!({"f": "2001:db8::5"})
        ));
        assert!(!field(
            r#"[{"cidr": "2001:db8::/32"}]"#,
            json!({"f": "2001:db9::5"})
        ));
    }

    #[test]
    fn values_in_a_list_are_alternatives() {
        let p = r#"["a", {"prefix": "zz"}, {"numeric": [">", 100]}]"#;
        assert!(field(p, json!({"f": "a"})));
        assert!(field(p, json!({"f": "zzz"})));
        assert!(field(p, json!({"f": 101})));
        assert!(!field(p, json!({"f": "b"})));
    }

    #[test]
    fn object_in_event_where_values_expected_does_not_match() {
        let p = pattern(r#"{"detail": ["x"]}"#);
        assert!(!p.matches(&s3_object_created("k")));
    }

    #[test]
    fn error_not_json() {
        assert!(error("{").starts_with("event pattern is not valid JSON"));
    }

    #[test]
    fn error_not_an_object() {
        assert_eq!(
            error(r#"["aws.s3"]"#),
            "event pattern must be a JSON object, got an array"
        );
        assert_eq!(
            error("null"),
            "event pattern must be a JSON object, got null"
        );
    }

    #[test]
    fn error_unknown_operator_names_it() {
        let e = error(r#"{"detail": {"key": [{"sufix": "/_READY"}]}}"#);
        assert_eq!(e, "event pattern at detail.key: unknown operator \"sufix\"");
        let e = error(r#"{"f": [{"anything-but": {"contains": "x"}}]}"#);
        assert!(e.contains("unknown operator \"contains\""), "{e}");
        let e = error(r#"{"f": [{"prefix": {"ignore-case": "x"}}]}"#);
        assert!(e.contains("unknown operator \"ignore-case\""), "{e}");
    }

    #[test]
    fn error_bad_field_values() {
        assert_eq!(
            error(r#"{"source": "aws.s3"}"#),
            "event pattern at source: expected an array of allowed values or a nested object, \
             got a string"
        );
        assert!(error(r#"{"source": []}"#).contains("empty arrays"));
        assert!(error(r#"{"detail": {}}"#).contains("detail: empty objects"));
        assert!(error("{}").contains("(root): empty objects"));
        assert!(error(r#"{"f": [["a"]]}"#).contains("nested arrays"));
    }

    #[test]
    fn error_bad_operator_operands() {
        assert!(error(r#"{"f": [{"prefix": 1}]}"#).contains("f.prefix: expected a string"));
        assert!(error(r#"{"f": [{"exists": "yes"}]}"#).contains("expected true or false"));
        assert!(error(r#"{"f": [{"prefix": "a", "suffix": "b"}]}"#).contains("exactly one key"));
        assert!(error(r#"{"f": [{"anything-but": []}]}"#).contains("at least one value"));
        assert!(
            error(r#"{"f": [{"anything-but": [{"prefix": "a"}]}]}"#).contains("only plain values")
        );
        assert!(error(r#"{"f": [{"wildcard": "a**b"}]}"#).contains("consecutive"));
        assert!(error(r#"{"f": [{"wildcard": "a\\b"}]}"#).contains("may only escape"));
        assert!(error(r#"{"f": [{"cidr": "10.0.0.0/33"}]}"#).contains("not a CIDR block"));
        assert!(error(r#"{"f": [{"cidr": "10.0.0.0"}]}"#).contains("not a CIDR block"));
    }

    #[test]
    fn error_bad_numeric() {
        assert!(error(r#"{"f": [{"numeric": [">", 0, "<="]}]}"#).contains("got 3 items"));
        assert!(error(r#"{"f": [{"numeric": []}]}"#).contains("got 0 items"));
        assert!(error(r#"{"f": [{"numeric": ["!=", 0]}]}"#).contains("\"!=\" is not a comparison"));
        assert!(
            error(r#"{"f": [{"numeric": [">", "0"]}]}"#).contains("must be followed by a number")
        );
        assert!(error(r#"{"f": [{"numeric": 5}]}"#).contains("operator/number pairs"));
    }

    #[test]
    fn error_bad_or() {
        assert!(error(r#"{"$or": {"source": ["a"]}}"#).contains("$or must be an array"));
        assert!(error(r#"{"$or": [{"source": ["a"]}]}"#).contains("at least two"));
        assert!(error(r#"{"$or": [{"source": ["a"]}, "b"]}"#).contains("$or.1: $or alternatives"));
        let e = error(r#"{"$or": [{"source": ["a"]}, {"source": [{"nope": 1}]}]}"#);
        assert_eq!(
            e,
            "event pattern at $or.1.source: unknown operator \"nope\""
        );
    }
}
