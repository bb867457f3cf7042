//! `deployer::stack` against hand-built CloudFormation responses.
//!
//! The local emulator cannot put a stack into ROLLBACK_COMPLETE, UPDATE_ROLLBACK_FAILED or
//! DELETE_FAILED, keep it in an `_IN_PROGRESS` state, emit per-resource stack events, or return a
//! change set with replacements or a second page. These tests answer the SDK's requests from a fake
//! HTTP client instead: each test scripts, per API action and in order, the AWS Query protocol XML
//! CloudFormation returns, and records the sequence of actions the code called.
//!
//! A call the test did not script is answered with an `UnscriptedCall` error and recorded;
//! [`FakeCfn::verify`] fails the test on it (and on scripted replies nobody asked for), so an error
//! the code under test swallows still fails the test.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cloudformation::Client;
use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::date_time::Format;
use deployer::output::Reporter;
use deployer::render::{RenderedStack, StackKind};
use deployer::stack::{self, Change, Deployed, Poll, StackError};
use http::StatusCode;

// ---------------------------------------------------------------------------------------------
// The fake CloudFormation endpoint
// ---------------------------------------------------------------------------------------------

/// One request the SDK sent: the form fields of its body.
#[derive(Debug, Clone)]
struct Call {
    action: String,
    params: Vec<(String, String)>,
}

impl Call {
    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted HTTP response.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: String,
}

#[derive(Debug, Default)]
struct Script {
    /// Replies per action, served in order.
    queued: HashMap<String, VecDeque<Reply>>,
    /// Replies served for an action once its queue is empty.
    repeated: HashMap<String, Reply>,
    calls: Vec<Call>,
    unscripted: Vec<String>,
}

/// A CloudFormation endpoint that serves scripted replies and records the calls.
#[derive(Debug, Clone, Default)]
struct FakeCfn(Arc<Mutex<Script>>);

/// Replaced in a reply body by the `ChangeSetName` of the request it answers.
const CHANGE_SET_NAME: &str = "{ChangeSetName}";

impl FakeCfn {
    fn lock(&self) -> MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `reply` for the next unanswered call of `action`.
    fn then(&self, action: &str, reply: Reply) -> &Self {
        self.lock()
            .queued
            .entry(action.to_string())
            .or_default()
            .push_back(reply);
        self
    }

    /// Answers every call of `action` with `reply` once its queue is empty.
    fn always(&self, action: &str, reply: Reply) -> &Self {
        self.lock().repeated.insert(action.to_string(), reply);
        self
    }

    fn respond(&self, req: http::Request<SdkBody>) -> http::Response<SdkBody> {
        let form = req
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let params = parse_form(&form);
        let action = params
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| format!("<no Action in request body {form:?}>"));
        let call = Call { action, params };

        let mut script = self.lock();
        script.calls.push(call.clone());
        let scripted = match script
            .queued
            .get_mut(&call.action)
            .and_then(VecDeque::pop_front)
        {
            Some(r) => Some(r),
            None => script.repeated.get(&call.action).cloned(),
        };
        let reply = match scripted {
            Some(r) => r,
            None => {
                let n = script.calls.len();
                script.unscripted.push(format!(
                    "call #{n} {} has no scripted reply (params {:?})",
                    call.action, call.params
                ));
                error(
                    "UnscriptedCall",
                    &format!("the test scripted no reply for {}", call.action),
                )
            }
        };
        drop(script);

        let body = match call.param("ChangeSetName") {
            Some(name) => reply.body.replace(CHANGE_SET_NAME, name),
            None => reply.body,
        };
        let mut resp = http::Response::new(SdkBody::from(body));
        *resp.status_mut() = reply.status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/xml"),
        );
        resp
    }

    fn client(&self) -> Client {
        let fake = self.clone();
        let http = infallible_client_fn(move |req| fake.respond(req));
        let conf = aws_sdk_cloudformation::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("a", "b", None, None, "t"))
            .http_client(http)
            .build();
        Client::from_conf(conf)
    }

    /// The actions called so far, in order.
    fn actions(&self) -> Vec<String> {
        self.lock().calls.iter().map(|c| c.action.clone()).collect()
    }

    /// The calls of one action, in order.
    fn calls(&self, action: &str) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.action == action)
            .cloned()
            .collect()
    }

    /// Fails the test if the code called something the test did not script, or left a scripted
    /// reply unused. Call it right after the operation, before looking at its result (shown in
    /// the failure message).
    fn verify(&self, result: &impl std::fmt::Debug) {
        let script = self.lock();
        let sequence = script
            .calls
            .iter()
            .map(|c| c.action.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            script.unscripted.is_empty(),
            "unexpected CloudFormation calls: {:#?}\nall calls: {sequence}\nresult: {result:?}",
            script.unscripted
        );
        let mut unused: Vec<String> = script
            .queued
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(a, q)| format!("{a} x{}", q.len()))
            .collect();
        unused.sort();
        assert!(
            unused.is_empty(),
            "scripted replies never requested: {unused:?}\nall calls: {sequence}\nresult: {result:?}"
        );
    }
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn parse_form(form: &str) -> Vec<(String, String)> {
    form.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Response fixtures (AWS Query protocol XML, as CloudFormation returns it)
// ---------------------------------------------------------------------------------------------

const NS: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
const STACK: &str = "waste-dev-app";
const STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/waste-dev-app/4f2a6e10-1b2c-11ef-9c3e-0a1b2c3d4e5f";
const CREATED_AT: &str = "2024-05-01T10:00:00.123Z";

fn request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "7d3c1f0e-0000-4000-8000-{:012x}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `<{Action}Response><{Action}Result>{result}</..><ResponseMetadata/></..>`, HTTP 200.
fn ok(action: &str, result: &str) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: format!(
            r#"<{action}Response xmlns="{NS}">
  <{action}Result>{result}</{action}Result>
  <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>
</{action}Response>"#,
            request_id()
        ),
    }
}

/// The reply of an action whose response has no result element (DeleteStack).
fn ok_empty(action: &str) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: format!(
            r#"<{action}Response xmlns="{NS}">
  <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>
</{action}Response>"#,
            request_id()
        ),
    }
}

/// A client error as the Query protocol returns it (HTTP 400).
fn error(code: &str, message: &str) -> Reply {
    Reply {
        status: StatusCode::BAD_REQUEST,
        body: format!(
            r#"<ErrorResponse xmlns="{NS}">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>
  <RequestId>{}</RequestId>
</ErrorResponse>"#,
            esc(message),
            request_id()
        ),
    }
}

/// What DescribeStacks and DescribeStackEvents answer for a stack name that does not exist.
fn stack_does_not_exist() -> Reply {
    error(
        "ValidationError",
        &format!("Stack with id {STACK} does not exist"),
    )
}

/// DescribeStacks: the stack in `status`, without outputs.
fn stack(status: &str) -> Reply {
    stack_with(status, &[])
}

/// DescribeStacks: the stack in `status` with these outputs.
fn stack_with(status: &str, outputs: &[(&str, &str)]) -> Reply {
    let outputs: String = outputs
        .iter()
        .map(|(k, v)| {
            format!(
                "<member><OutputKey>{}</OutputKey><OutputValue>{}</OutputValue></member>",
                esc(k),
                esc(v)
            )
        })
        .collect();
    ok(
        "DescribeStacks",
        &format!(
            r#"<Stacks><member>
    <StackId>{STACK_ID}</StackId>
    <StackName>{STACK}</StackName>
    <CreationTime>{CREATED_AT}</CreationTime>
    <StackStatus>{status}</StackStatus>
    <DisableRollback>false</DisableRollback>
    <Capabilities><member>CAPABILITY_NAMED_IAM</member></Capabilities>
    <Outputs>{outputs}</Outputs>
    <Tags/>
    <DriftInformation><StackDriftStatus>NOT_CHECKED</StackDriftStatus></DriftInformation>
  </member></Stacks>"#
        ),
    )
}

/// One stack event.
#[derive(Debug, Clone, Copy)]
struct Event {
    at: i64,
    logical_id: &'static str,
    resource_type: &'static str,
    status: &'static str,
    reason: &'static str,
}

fn resource_event(
    at: i64,
    logical_id: &'static str,
    resource_type: &'static str,
    status: &'static str,
    reason: &'static str,
) -> Event {
    Event {
        at,
        logical_id,
        resource_type,
        status,
        reason,
    }
}

/// An event of the stack itself (its logical id is the stack name).
fn stack_event(at: i64, status: &'static str, reason: &'static str) -> Event {
    resource_event(at, STACK, "AWS::CloudFormation::Stack", status, reason)
}

/// DescribeStackEvents: `events`, given oldest first, returned newest first as AWS does.
fn events(events: &[Event]) -> Reply {
    let members: String = events
        .iter()
        .rev()
        .map(|e| {
            let reason = if e.reason.is_empty() {
                String::new()
            } else {
                format!(
                    "<ResourceStatusReason>{}</ResourceStatusReason>",
                    esc(e.reason)
                )
            };
            format!(
                r#"<member>
      <EventId>{id}-{status}-{at}</EventId>
      <StackId>{STACK_ID}</StackId>
      <StackName>{STACK}</StackName>
      <LogicalResourceId>{id}</LogicalResourceId>
      <PhysicalResourceId></PhysicalResourceId>
      <ResourceType>{ty}</ResourceType>
      <Timestamp>{ts}</Timestamp>
      <ResourceStatus>{status}</ResourceStatus>
      {reason}
    </member>"#,
                id = e.logical_id,
                status = e.status,
                at = e.at,
                ty = e.resource_type,
                ts = iso8601(e.at),
            )
        })
        .collect();
    ok(
        "DescribeStackEvents",
        &format!("<StackEvents>{members}</StackEvents>"),
    )
}

/// GetTemplate: the deployed template body.
fn template(body: &str) -> Reply {
    ok(
        "GetTemplate",
        &format!(
            "<TemplateBody>{}</TemplateBody>\
             <StagesAvailable><member>Original</member><member>Processed</member></StagesAvailable>",
            esc(body)
        ),
    )
}

fn change_set_id() -> String {
    format!(
        "arn:aws:cloudformation:us-east-1:123456789012:changeSet/{CHANGE_SET_NAME}/9b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    )
}

/// CreateChangeSet accepted.
fn change_set_created() -> Reply {
    ok(
        "CreateChangeSet",
        &format!("<Id>{}</Id><StackId>{STACK_ID}</StackId>", change_set_id()),
    )
}

/// One `ResourceChange` of a change set.
#[derive(Debug, Clone, Copy)]
struct ResourceChange {
    action: &'static str,
    logical_id: &'static str,
    resource_type: &'static str,
    /// `None` for additions (CloudFormation leaves Replacement out).
    replacement: Option<&'static str>,
}

fn modify(
    logical_id: &'static str,
    resource_type: &'static str,
    replacement: &'static str,
) -> ResourceChange {
    ResourceChange {
        action: "Modify",
        logical_id,
        resource_type,
        replacement: Some(replacement),
    }
}

/// DescribeChangeSet: a change set in `status`, with one page of `changes`.
fn change_set(
    status: &str,
    execution_status: &str,
    status_reason: Option<&str>,
    changes: &[ResourceChange],
    next_token: Option<&str>,
) -> Reply {
    let reason = status_reason
        .map(|r| format!("<StatusReason>{}</StatusReason>", esc(r)))
        .unwrap_or_default();
    let changes: String = changes
        .iter()
        .map(|c| {
            let replacement = c
                .replacement
                .map(|r| format!("<Replacement>{r}</Replacement>"))
                .unwrap_or_default();
            format!(
                r#"<member>
      <Type>Resource</Type>
      <ResourceChange>
        <Action>{}</Action>
        <LogicalResourceId>{}</LogicalResourceId>
        <PhysicalResourceId>{}-physical</PhysicalResourceId>
        <ResourceType>{}</ResourceType>
        {replacement}
        <Scope><member>Properties</member></Scope>
      </ResourceChange>
    </member>"#,
                c.action, c.logical_id, c.logical_id, c.resource_type
            )
        })
        .collect();
    let next = next_token
        .map(|t| format!("<NextToken>{}</NextToken>", esc(t)))
        .unwrap_or_default();
    ok(
        "DescribeChangeSet",
        &format!(
            r#"<ChangeSetName>{CHANGE_SET_NAME}</ChangeSetName>
  <ChangeSetId>{}</ChangeSetId>
  <StackId>{STACK_ID}</StackId>
  <StackName>{STACK}</StackName>
  <CreationTime>{CREATED_AT}</CreationTime>
  <ExecutionStatus>{execution_status}</ExecutionStatus>
  <Status>{status}</Status>
  {reason}
  <Capabilities><member>CAPABILITY_NAMED_IAM</member></Capabilities>
  <Changes>{changes}</Changes>
  {next}"#,
            change_set_id()
        ),
    )
}

/// A change set that is ready to execute.
fn change_set_ready(changes: &[ResourceChange]) -> Reply {
    change_set("CREATE_COMPLETE", "AVAILABLE", None, changes, None)
}

/// A change set that CloudFormation could not create.
fn change_set_failed(reason: &str) -> Reply {
    change_set("FAILED", "UNAVAILABLE", Some(reason), &[], None)
}

/// The reason CloudFormation gives for a change set without changes.
const NO_CHANGES: &str = "The submitted information didn't contain changes. Submit different information to create a change set.";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        .try_into()
        .unwrap_or(i64::MAX)
}

/// An ISO-8601 timestamp as CloudFormation writes it (`2024-05-01T10:00:00.250Z`).
fn iso8601(secs: i64) -> String {
    aws_smithy_types::DateTime::from_secs_and_nanos(secs, 250_000_000)
        .fmt(Format::DateTime)
        .unwrap_or_else(|e| panic!("cannot format {secs} as a timestamp: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// The template currently deployed (what GetTemplate returns).
const DEPLOYED_BODY: &str = "\
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
";

/// The template to deploy.
const RENDERED_BODY: &str = "\
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      TableClass: STANDARD_INFREQUENT_ACCESS
  Bucket:
    Type: AWS::S3::Bucket
  Queue:
    Type: AWS::SQS::Queue
Outputs:
  TableName:
    Value: !Ref Table
";

fn rendered() -> RenderedStack {
    RenderedStack {
        kind: StackKind::App,
        stack_name: STACK.into(),
        body: RENDERED_BODY.into(),
        resources: vec![
            ("Table".into(), "AWS::DynamoDB::Table".into()),
            ("Bucket".into(), "AWS::S3::Bucket".into()),
            ("Queue".into(), "AWS::SQS::Queue".into()),
        ],
        context: serde_json::Value::Null,
    }
}

fn poll() -> Poll {
    Poll {
        interval: Duration::ZERO,
        timeout: Duration::from_secs(5),
    }
}

fn tags() -> Vec<(String, String)> {
    vec![("app".into(), "waste".into()), ("env".into(), "dev".into())]
}

async fn deploy(fake: &FakeCfn) -> Result<Deployed, StackError> {
    stack::deploy(
        &fake.client(),
        &rendered(),
        &tags(),
        poll(),
        &Reporter::quiet(),
    )
    .await
}

async fn plan(fake: &FakeCfn) -> Result<Vec<Change>, StackError> {
    stack::plan(&fake.client(), &rendered(), poll()).await
}

fn ok_or_panic<T>(result: Result<T, StackError>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what} failed: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// A stack whose first create failed sits in ROLLBACK_COMPLETE, where "only a delete operation
/// can be performed": `deploy` deletes it, waits until DescribeStacks says it does not exist, and
/// creates it again.
///
/// AWS: "Describing and listing your stacks", stack status codes (ROLLBACK_COMPLETE),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html ;
/// "DescribeStacks" ("If the stack doesn't exist, a ValidationError is returned"),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html
#[tokio::test]
async fn rollback_complete_stack_is_deleted_and_created_again() {
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("ROLLBACK_COMPLETE")) // prepare
        .then("DescribeStacks", stack("ROLLBACK_COMPLETE")) // delete: current state
        .then("DeleteStack", ok_empty("DeleteStack"))
        .then("DescribeStacks", stack("DELETE_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack_does_not_exist())
        .then("DescribeStackEvents", stack_does_not_exist())
        .then("DescribeStacks", stack_does_not_exist()) // prepare again: missing
        .then("DescribeStacks", stack_does_not_exist()) // create: still missing
        .then(
            "CreateStack",
            ok("CreateStack", &format!("<StackId>{STACK_ID}</StackId>")),
        )
        .then("DescribeStacks", stack("CREATE_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("CREATE_COMPLETE"))
        .then("DescribeStackEvents", events(&[]))
        .then(
            "DescribeStacks",
            stack_with(
                "CREATE_COMPLETE",
                &[
                    ("TableName", "waste-dev-table"),
                    (
                        "ApiUrl",
                        "https://abc123.execute-api.us-east-1.amazonaws.com/v1",
                    ),
                ],
            ),
        );

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "DescribeStacks",
            "DeleteStack",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStacks",
            "CreateStack",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
        ]
    );
    let create = &fake.calls("CreateStack")[0];
    assert_eq!(create.param("StackName"), Some(STACK));
    assert_eq!(create.param("TemplateBody"), Some(RENDERED_BODY));
    assert_eq!(
        create.param("Capabilities.member.1"),
        Some("CAPABILITY_NAMED_IAM")
    );
    assert_eq!(create.param("Tags.member.1.Key"), Some("app"));
    assert_eq!(create.param("Tags.member.2.Value"), Some("dev"));
    assert_eq!(fake.calls("DeleteStack")[0].param("StackName"), Some(STACK));

    let deployed = ok_or_panic(result, "deploy");
    assert_eq!(
        deployed,
        Deployed {
            stack: STACK.into(),
            changed: true,
            status: "CREATE_COMPLETE".into(),
            outputs: vec![
                ("TableName".into(), "waste-dev-table".into()),
                (
                    "ApiUrl".into(),
                    "https://abc123.execute-api.us-east-1.amazonaws.com/v1".into()
                ),
            ],
        }
    );
}

/// A stack in UPDATE_ROLLBACK_FAILED cannot be updated until its rollback is continued:
/// `deploy` calls ContinueUpdateRollback, waits for UPDATE_ROLLBACK_COMPLETE, and then updates
/// it through an UPDATE change set.
///
/// AWS: "Troubleshooting CloudFormation", Update rollback failed,
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html#troubleshooting-errors-update-rollback-failed ;
/// "ContinueUpdateRollback",
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ContinueUpdateRollback.html
#[tokio::test]
async fn update_rollback_failed_stack_is_rolled_back_then_updated() {
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_ROLLBACK_FAILED"))
        .then("ContinueUpdateRollback", ok("ContinueUpdateRollback", ""))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_COMPLETE"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_COMPLETE")) // prepare again
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then(
            "DescribeChangeSet",
            change_set("CREATE_PENDING", "UNAVAILABLE", None, &[], None),
        )
        .then(
            "DescribeChangeSet",
            change_set_ready(&[modify("Table", "AWS::DynamoDB::Table", "False")]),
        )
        .then("ExecuteChangeSet", ok("ExecuteChangeSet", ""))
        .then("DescribeStacks", stack("UPDATE_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("DescribeStackEvents", events(&[]))
        .then(
            "DescribeStacks",
            stack_with("UPDATE_COMPLETE", &[("TableName", "waste-dev-table")]),
        );

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "ContinueUpdateRollback",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "GetTemplate",
            "CreateChangeSet",
            "DescribeChangeSet",
            "DescribeChangeSet",
            "ExecuteChangeSet",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
        ]
    );
    assert_eq!(
        fake.calls("ContinueUpdateRollback")[0].param("StackName"),
        Some(STACK)
    );
    assert_eq!(
        fake.calls("GetTemplate")[0].param("TemplateStage"),
        Some("Original")
    );
    let create = &fake.calls("CreateChangeSet")[0];
    assert_eq!(create.param("ChangeSetType"), Some("UPDATE"));
    assert_eq!(create.param("TemplateBody"), Some(RENDERED_BODY));
    assert_eq!(
        create.param("Capabilities.member.1"),
        Some("CAPABILITY_NAMED_IAM")
    );
    let name = create
        .param("ChangeSetName")
        .unwrap_or_default()
        .to_string();
    assert!(!name.is_empty(), "CreateChangeSet without a ChangeSetName");
    for c in fake
        .calls("DescribeChangeSet")
        .iter()
        .chain(&fake.calls("ExecuteChangeSet"))
    {
        assert_eq!(
            c.param("ChangeSetName"),
            Some(name.as_str()),
            "{}",
            c.action
        );
        assert_eq!(c.param("StackName"), Some(STACK), "{}", c.action);
    }

    let deployed = ok_or_panic(result, "deploy");
    assert_eq!(
        deployed,
        Deployed {
            stack: STACK.into(),
            changed: true,
            status: "UPDATE_COMPLETE".into(),
            outputs: vec![("TableName".into(), "waste-dev-table".into())],
        }
    );
}

/// When continuing the rollback fails again (a resource still cannot be rolled back), `deploy`
/// stops with the stack's status and the failing resource instead of trying to update it.
///
/// AWS: "ContinueUpdateRollback" (ResourcesToSkip: resources that cannot be rolled back),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ContinueUpdateRollback.html ;
/// "Troubleshooting CloudFormation", Update rollback failed,
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html#troubleshooting-errors-update-rollback-failed
#[tokio::test]
async fn update_rollback_that_fails_again_is_reported() {
    let t0 = now_secs();
    let failed = [
        stack_event(t0 + 1, "UPDATE_ROLLBACK_IN_PROGRESS", "User Initiated"),
        resource_event(
            t0 + 2,
            "Table",
            "AWS::DynamoDB::Table",
            "UPDATE_FAILED",
            "Table waste-dev-table was deleted outside of CloudFormation",
        ),
        stack_event(
            t0 + 3,
            "UPDATE_ROLLBACK_FAILED",
            "The following resource(s) failed to update: [Table].",
        ),
    ];
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_ROLLBACK_FAILED"))
        .then("ContinueUpdateRollback", ok("ContinueUpdateRollback", ""))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&failed[..1]))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_FAILED"))
        .then("DescribeStackEvents", events(&failed))
        .then("DescribeStackEvents", events(&failed));

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "ContinueUpdateRollback",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStackEvents",
        ]
    );
    match result {
        Err(e @ StackError::Failed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("UPDATE_ROLLBACK_FAILED"), "{msg}");
            assert!(
                msg.contains("Table: Table waste-dev-table was deleted outside of CloudFormation"),
                "{msg}"
            );
        }
        other => panic!("expected StackError::Failed, got {other:?}"),
    }
}

/// A stack with an operation in progress cannot be changed: `deploy` waits (polling
/// DescribeStacks) until the operation ends, then compares templates; with the deployed template
/// unchanged it reports no change and makes no change set.
///
/// AWS: "Describing and listing your stacks", stack status codes (UPDATE_IN_PROGRESS,
/// UPDATE_COMPLETE_CLEANUP_IN_PROGRESS, UPDATE_COMPLETE),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html ;
/// "GetTemplate" (TemplateStage Original),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_GetTemplate.html
#[tokio::test]
async fn operation_in_progress_is_waited_for() {
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_IN_PROGRESS")) // prepare
        .then("DescribeStacks", stack("UPDATE_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("UPDATE_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&[]))
        .then(
            "DescribeStacks",
            stack("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
        )
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("DescribeStackEvents", events(&[]))
        .then("DescribeStacks", stack("UPDATE_COMPLETE")) // prepare again
        .then("GetTemplate", template(RENDERED_BODY))
        .then("DescribeStacks", stack("UPDATE_COMPLETE")) // status
        .then(
            "DescribeStacks",
            stack_with("UPDATE_COMPLETE", &[("TableName", "waste-dev-table")]),
        );

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "GetTemplate",
            "DescribeStacks",
            "DescribeStacks",
        ]
    );
    let deployed = ok_or_panic(result, "deploy");
    assert_eq!(
        deployed,
        Deployed {
            stack: STACK.into(),
            changed: false,
            status: "UPDATE_COMPLETE".into(),
            outputs: vec![("TableName".into(), "waste-dev-table".into())],
        }
    );
}

/// An operation that stays in progress longer than the poll timeout ends the wait with a
/// `Timeout` error naming the status (the stack keeps running; the next run waits again).
///
/// AWS: "Describing and listing your stacks", stack status codes (UPDATE_IN_PROGRESS),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html
#[tokio::test]
async fn operation_still_in_progress_after_the_timeout_is_a_timeout_error() {
    let fake = FakeCfn::default();
    fake.always("DescribeStacks", stack("UPDATE_IN_PROGRESS"))
        .always("DescribeStackEvents", events(&[]));

    let result = stack::deploy(
        &fake.client(),
        &rendered(),
        &tags(),
        Poll {
            interval: Duration::from_millis(5),
            timeout: Duration::from_millis(50),
        },
        &Reporter::quiet(),
    )
    .await;
    fake.verify(&result);

    let actions = fake.actions();
    assert!(
        actions
            .iter()
            .all(|a| a == "DescribeStacks" || a == "DescribeStackEvents"),
        "{actions:?}"
    );
    match result {
        Err(StackError::Timeout { stack, status, .. }) => {
            assert_eq!(stack, STACK);
            assert_eq!(status, "UPDATE_IN_PROGRESS");
        }
        other => panic!("expected StackError::Timeout, got {other:?}"),
    }
}

/// During an update `deploy` streams the stack's events (DescribeStackEvents, newest first, only
/// those since the operation started); when the update fails and rolls back to
/// UPDATE_ROLLBACK_COMPLETE the error names the resource that failed and CloudFormation's reason.
///
/// AWS: "DescribeStackEvents" ("Returns all stack related events for a specified stack in reverse
/// chronological order"),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStackEvents.html ;
/// "Describing and listing your stacks", stack status codes (UPDATE_ROLLBACK_COMPLETE),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html
#[tokio::test]
async fn failed_update_reports_the_failing_resource_and_its_reason() {
    let t0 = now_secs();
    let queue_reason = "Resource handler returned message: \"Value 1209601 for parameter MessageRetentionPeriod is invalid. Reason: Must be between 60 and 1209600.\" (RequestToken: 0c7e3b5a-1f2d-4e6a-9b8c-7d6e5f4a3b2c, HandlerErrorCode: InvalidRequest)";
    let timeline = [
        stack_event(t0 + 1, "UPDATE_IN_PROGRESS", "User Initiated"),
        resource_event(
            t0 + 2,
            "Bucket",
            "AWS::S3::Bucket",
            "CREATE_IN_PROGRESS",
            "",
        ),
        resource_event(t0 + 2, "Queue", "AWS::SQS::Queue", "CREATE_IN_PROGRESS", ""),
        resource_event(
            t0 + 3,
            "Bucket",
            "AWS::S3::Bucket",
            "CREATE_IN_PROGRESS",
            "Resource creation Initiated",
        ),
        resource_event(
            t0 + 4,
            "Queue",
            "AWS::SQS::Queue",
            "CREATE_FAILED",
            queue_reason,
        ),
        resource_event(t0 + 5, "Bucket", "AWS::S3::Bucket", "CREATE_COMPLETE", ""),
        stack_event(
            t0 + 6,
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "The following resource(s) failed to create: [Queue].",
        ),
        stack_event(t0 + 7, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", ""),
        resource_event(
            t0 + 8,
            "Bucket",
            "AWS::S3::Bucket",
            "DELETE_IN_PROGRESS",
            "",
        ),
        resource_event(t0 + 9, "Bucket", "AWS::S3::Bucket", "DELETE_COMPLETE", ""),
        stack_event(t0 + 10, "UPDATE_ROLLBACK_COMPLETE", ""),
    ];
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then("DescribeChangeSet", change_set_ready(&[]))
        .then("ExecuteChangeSet", ok("ExecuteChangeSet", ""))
        .then("DescribeStacks", stack("UPDATE_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&timeline[..3]))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_IN_PROGRESS"))
        .then("DescribeStackEvents", events(&timeline[..7]))
        .then(
            "DescribeStacks",
            stack("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        )
        .then("DescribeStackEvents", events(&timeline[..9]))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_COMPLETE"))
        .then("DescribeStackEvents", events(&timeline))
        .then("DescribeStackEvents", events(&timeline)); // failure reasons

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "GetTemplate",
            "CreateChangeSet",
            "DescribeChangeSet",
            "ExecuteChangeSet",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStacks",
            "DescribeStackEvents",
            "DescribeStackEvents",
        ]
    );
    for c in fake.calls("DescribeStackEvents") {
        assert_eq!(c.param("StackName"), Some(STACK));
    }
    match result {
        Err(
            ref e @ StackError::Failed {
                ref stack,
                ref status,
                ref reasons,
            },
        ) => {
            assert_eq!(stack, STACK);
            assert_eq!(status, "UPDATE_ROLLBACK_COMPLETE");
            assert_eq!(reasons, &format!(" (Queue: {queue_reason})"));
            let msg = e.to_string();
            assert!(msg.contains("Queue"), "{msg}");
            assert!(msg.contains("MessageRetentionPeriod is invalid"), "{msg}");
            assert!(!msg.contains("Bucket"), "{msg}");
        }
        ref other => panic!("expected StackError::Failed, got {other:?}"),
    }
}

/// The events of a stack go back to its creation, so DescribeStackEvents also returns the
/// failures of earlier operations. The reasons given for this failure must come from this
/// operation only, not from an update that failed a week ago.
///
/// AWS: "DescribeStackEvents" ("Returns all stack related events for a specified stack in reverse
/// chronological order"),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStackEvents.html
#[tokio::test]
async fn failure_reasons_leave_out_earlier_operations() {
    let t0 = now_secs();
    let week_ago = t0 - 7 * 24 * 3600;
    let history = [
        stack_event(week_ago, "UPDATE_IN_PROGRESS", "User Initiated"),
        resource_event(
            week_ago + 1,
            "Topic",
            "AWS::SNS::Topic",
            "CREATE_FAILED",
            "Invalid parameter: Endpoint",
        ),
        stack_event(week_ago + 2, "UPDATE_ROLLBACK_COMPLETE", ""),
        stack_event(t0 + 1, "UPDATE_IN_PROGRESS", "User Initiated"),
        resource_event(
            t0 + 2,
            "Queue",
            "AWS::SQS::Queue",
            "CREATE_FAILED",
            "Queue name already exists",
        ),
        stack_event(t0 + 3, "UPDATE_ROLLBACK_IN_PROGRESS", ""),
        stack_event(t0 + 4, "UPDATE_ROLLBACK_COMPLETE", ""),
    ];
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then("DescribeChangeSet", change_set_ready(&[]))
        .then("ExecuteChangeSet", ok("ExecuteChangeSet", ""))
        .then("DescribeStacks", stack("UPDATE_ROLLBACK_COMPLETE"))
        .then("DescribeStackEvents", events(&history))
        .then("DescribeStackEvents", events(&history)); // failure reasons

    let result = deploy(&fake).await;
    fake.verify(&result);

    match result {
        Err(StackError::Failed { reasons, .. }) => {
            assert_eq!(reasons, " (Queue: Queue name already exists)");
        }
        other => panic!("expected StackError::Failed, got {other:?}"),
    }
}

/// `plan` on an existing stack with a changed template makes an UPDATE change set, reads every
/// page of its changes (NextToken) including replacements, and deletes the change set.
///
/// AWS: "DescribeChangeSet" (Changes, NextToken),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html ;
/// "ResourceChange" (Replacement: True | False | Conditional),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ResourceChange.html
#[tokio::test]
async fn plan_reads_every_page_of_a_change_set_with_replacements() {
    let page1 = [
        modify("Table", "AWS::DynamoDB::Table", "True"),
        modify("Role", "AWS::IAM::Role", "False"),
    ];
    let page2 = [modify("Function", "AWS::Lambda::Function", "True")];
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then(
            "DescribeChangeSet",
            change_set("CREATE_IN_PROGRESS", "UNAVAILABLE", None, &[], None),
        )
        .then(
            "DescribeChangeSet",
            change_set(
                "CREATE_COMPLETE",
                "AVAILABLE",
                None,
                &page1,
                Some("page-2-token"),
            ),
        )
        .then(
            "DescribeChangeSet",
            change_set(
                "CREATE_COMPLETE",
                "AVAILABLE",
                None,
                &page1,
                Some("page-2-token"),
            ),
        )
        .then(
            "DescribeChangeSet",
            change_set("CREATE_COMPLETE", "AVAILABLE", None, &page2, None),
        )
        .then("DeleteChangeSet", ok("DeleteChangeSet", ""));

    let result = plan(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "GetTemplate",
            "CreateChangeSet",
            "DescribeChangeSet",
            "DescribeChangeSet",
            "DescribeChangeSet",
            "DescribeChangeSet",
            "DeleteChangeSet",
        ]
    );
    let create = &fake.calls("CreateChangeSet")[0];
    assert_eq!(create.param("ChangeSetType"), Some("UPDATE"));
    let name = create
        .param("ChangeSetName")
        .unwrap_or_default()
        .to_string();
    let describes = fake.calls("DescribeChangeSet");
    let tokens: Vec<Option<&str>> = describes.iter().map(|c| c.param("NextToken")).collect();
    assert_eq!(tokens, [None, None, None, Some("page-2-token")]);
    let deleted = &fake.calls("DeleteChangeSet")[0];
    assert_eq!(deleted.param("ChangeSetName"), Some(name.as_str()));
    assert_eq!(deleted.param("StackName"), Some(STACK));

    let change = |action: &str, id: &str, ty: &str, replacement: &str| Change {
        stack: STACK.into(),
        action: action.into(),
        logical_id: id.into(),
        resource_type: ty.into(),
        replacement: replacement.into(),
    };
    assert_eq!(
        ok_or_panic(result, "plan"),
        [
            change("Modify", "Table", "AWS::DynamoDB::Table", "True"),
            change("Modify", "Role", "AWS::IAM::Role", "False"),
            change("Modify", "Function", "AWS::Lambda::Function", "True"),
        ]
    );
}

/// A change set without changes ends FAILED with "The submitted information didn't contain
/// changes": `plan` reports no changes and deletes the change set.
///
/// AWS: "DescribeChangeSet" (Status FAILED, StatusReason),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html ;
/// "DeleteChangeSet",
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DeleteChangeSet.html
#[tokio::test]
async fn plan_with_a_change_set_without_changes_is_empty() {
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then("DescribeChangeSet", change_set_failed(NO_CHANGES))
        .then("DeleteChangeSet", ok("DeleteChangeSet", ""));

    let result = plan(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "GetTemplate",
            "CreateChangeSet",
            "DescribeChangeSet",
            "DeleteChangeSet",
        ]
    );
    let name = fake.calls("CreateChangeSet")[0]
        .param("ChangeSetName")
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        fake.calls("DeleteChangeSet")[0].param("ChangeSetName"),
        Some(name.as_str())
    );
    assert_eq!(ok_or_panic(result, "plan"), []);
}

/// `deploy` with a template that differs in text but not in resources gets the same
/// "didn't contain changes" change set: it executes nothing and reports the stack unchanged.
///
/// AWS: "DescribeChangeSet" (Status FAILED, StatusReason),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html
#[tokio::test]
async fn deploy_with_a_change_set_without_changes_changes_nothing() {
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then("DescribeChangeSet", change_set_failed(NO_CHANGES))
        .then("DeleteChangeSet", ok("DeleteChangeSet", ""))
        .then("DescribeStacks", stack("UPDATE_COMPLETE")) // status
        .then(
            "DescribeStacks",
            stack_with("UPDATE_COMPLETE", &[("TableName", "waste-dev-table")]),
        );

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "GetTemplate",
            "CreateChangeSet",
            "DescribeChangeSet",
            "DeleteChangeSet",
            "DescribeStacks",
            "DescribeStacks",
        ]
    );
    let deployed = ok_or_panic(result, "deploy");
    assert!(!deployed.changed);
    assert_eq!(deployed.status, "UPDATE_COMPLETE");
    assert_eq!(
        deployed.outputs,
        [("TableName".to_string(), "waste-dev-table".to_string())]
    );
}

/// A change set that failed for any other reason is an error carrying CloudFormation's reason;
/// the failed change set is still deleted.
///
/// AWS: "DescribeChangeSet" (Status FAILED, StatusReason),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeChangeSet.html
#[tokio::test]
async fn plan_with_a_failed_change_set_is_an_error() {
    let reason = "Requires capabilities : [CAPABILITY_AUTO_EXPAND]";
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("UPDATE_COMPLETE"))
        .then("GetTemplate", template(DEPLOYED_BODY))
        .then("CreateChangeSet", change_set_created())
        .then("DescribeChangeSet", change_set_failed(reason))
        .then("DeleteChangeSet", ok("DeleteChangeSet", ""));

    let result = plan(&fake).await;
    fake.verify(&result);

    assert_eq!(
        fake.actions(),
        [
            "DescribeStacks",
            "GetTemplate",
            "CreateChangeSet",
            "DescribeChangeSet",
            "DeleteChangeSet",
        ]
    );
    match result {
        Err(StackError::ChangeSetFailed { stack, reason: got }) => {
            assert_eq!(stack, STACK);
            assert_eq!(got, reason);
        }
        other => panic!("expected StackError::ChangeSetFailed, got {other:?}"),
    }
}

/// `plan` on a stack that does not exist makes no change set (a CREATE change set would leave a
/// REVIEW_IN_PROGRESS stack behind); it lists the template's resources as additions.
///
/// AWS: "CreateChangeSet" ("To create a change set for a stack that doesn't exist ... specify
/// CREATE"; the stack is created in REVIEW_IN_PROGRESS),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateChangeSet.html ;
/// "DescribeStacks" ("If the stack doesn't exist, a ValidationError is returned"),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html
#[tokio::test]
async fn plan_for_a_missing_stack_lists_the_template_without_a_change_set() {
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack_does_not_exist());

    let result = plan(&fake).await;
    fake.verify(&result);

    assert_eq!(fake.actions(), ["DescribeStacks"]);
    let add = |id: &str, ty: &str| Change {
        stack: STACK.into(),
        action: "Add".into(),
        logical_id: id.into(),
        resource_type: ty.into(),
        replacement: "-".into(),
    };
    assert_eq!(
        ok_or_panic(result, "plan"),
        [
            add("Table", "AWS::DynamoDB::Table"),
            add("Bucket", "AWS::S3::Bucket"),
            add("Queue", "AWS::SQS::Queue"),
        ]
    );
}

/// A stack in DELETE_FAILED can neither be updated nor recreated under its name until the delete
/// is fixed: `deploy` stops with the status and the resource that could not be deleted, and makes
/// no stack or change set.
///
/// AWS: "Describing and listing your stacks", stack status codes (DELETE_FAILED),
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/using-cfn-describing-stacks.html ;
/// "Troubleshooting CloudFormation", Delete stack fails,
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/troubleshooting.html#troubleshooting-errors-delete-stack-fails
#[tokio::test]
async fn delete_failed_stack_is_an_error_without_changes() {
    let t0 = now_secs();
    let fake = FakeCfn::default();
    fake.then("DescribeStacks", stack("DELETE_FAILED")).then(
        "DescribeStackEvents",
        events(&[
            stack_event(t0 - 60, "DELETE_IN_PROGRESS", "User Initiated"),
            resource_event(
                t0 - 50,
                "Bucket",
                "AWS::S3::Bucket",
                "DELETE_FAILED",
                "The bucket you tried to delete is not empty",
            ),
            stack_event(
                t0 - 49,
                "DELETE_FAILED",
                "The following resource(s) failed to delete: [Bucket].",
            ),
        ]),
    );

    let result = deploy(&fake).await;
    fake.verify(&result);

    assert_eq!(fake.actions(), ["DescribeStacks", "DescribeStackEvents"]);
    match result {
        Err(e @ StackError::Failed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("DELETE_FAILED"), "{msg}");
            assert!(
                msg.contains("Bucket: The bucket you tried to delete is not empty"),
                "{msg}"
            );
        }
        other => panic!("expected StackError::Failed, got {other:?}"),
    }
}
