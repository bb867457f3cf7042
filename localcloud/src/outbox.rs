//! The local outbox: where SNS email would have gone. After a `Publish` to a topic passes
//! through the front door to moto, the message (subject, body, time, the topic's email
//! subscribers) is appended to `outbox.jsonl`; an email `Subscribe` leaves the confirmation
//! mail AWS would send. `deployer local mail` lists them. The file lives in the state
//! directory, so mail survives a restart of the local cloud.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::cloud::Cloud;
use crate::httpx::{Buffered, Req};

#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    lock: Mutex<()>,
}

impl Outbox {
    pub fn new(path: PathBuf) -> Outbox {
        Outbox {
            path,
            lock: Mutex::new(()),
        }
    }

    pub fn append(&self, mail: &Value) {
        let Ok(_g) = self.lock.lock() else { return };
        if let Some(d) = self.path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = writeln!(f, "{mail}");
        }
    }

    /// Every mail, oldest first.
    pub fn list(&self) -> Vec<Value> {
        let Ok(_g) = self.lock.lock() else {
            return Vec::new();
        };
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

fn xml_tag(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_string())
}

pub async fn after(cloud: &Cloud, req: &Req, resp: &Buffered) {
    let form = req.form();
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    match get("Action").as_deref() {
        Some("Publish") => {
            let Some(topic) = get("TopicArn").or_else(|| get("TargetArn")) else {
                return;
            };
            let recipients = email_subscribers(cloud, &topic).await;
            let body = String::from_utf8_lossy(&resp.body);
            cloud.outbox.append(&json!({
                "time": crate::httpx::now_iso(),
                "topic_arn": topic,
                "subject": get("Subject").unwrap_or_default(),
                "body": get("Message").unwrap_or_default(),
                "recipients": recipients,
                "message_id": xml_tag(&body, "MessageId"),
            }));
        }
        Some("Subscribe") => {
            let protocol = get("Protocol").unwrap_or_default();
            if protocol != "email" && protocol != "email-json" {
                return;
            }
            let (Some(topic), Some(endpoint)) = (get("TopicArn"), get("Endpoint")) else {
                return;
            };
            let name = topic.rsplit(':').next().unwrap_or_default().to_string();
            cloud.outbox.append(&json!({
                "time": crate::httpx::now_iso(),
                "topic_arn": topic,
                "subject": "AWS Notification - Subscription Confirmation",
                "body": format!(
                    "You have chosen to subscribe to the topic:\n{topic}\n\nTo confirm this subscription, click or visit the link below (if this was in error no action is necessary):\nConfirm subscription to {name}\n"
                ),
                "recipients": [endpoint],
                "kind": "subscription-confirmation",
            }));
        }
        _ => {}
    }
}

async fn email_subscribers(cloud: &Cloud, topic: &str) -> Vec<String> {
    let sns = aws_sdk_sns::Client::new(&cloud.moto);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = sns
            .list_subscriptions_by_topic()
            .topic_arn(topic)
            .set_next_token(token)
            .send()
            .await
        else {
            break;
        };
        for s in page.subscriptions() {
            let p = s.protocol().unwrap_or_default();
            if p == "email" || p == "email-json" {
                if let Some(e) = s.endpoint() {
                    out.push(e.to_string());
                }
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out
}
