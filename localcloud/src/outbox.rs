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
    /// Email subscriptions made through the front door that nobody confirmed yet (SNS
    /// delivers nothing to them). moto confirms every subscription at once, so the pending
    /// state is kept here, on disk, and shown in SNS's own list answers.
    pending: Mutex<std::collections::BTreeSet<String>>,
    pending_path: PathBuf,
}

impl Outbox {
    pub fn new(path: PathBuf) -> Result<Outbox, crate::Error> {
        let pending_path = path.with_file_name("sns-pending.json");
        let pending = crate::files::load_json(
            &pending_path,
            "the email subscriptions nobody confirmed yet",
        )?;
        Ok(Outbox {
            path,
            lock: Mutex::new(()),
            pending: Mutex::new(pending),
            pending_path,
        })
    }

    fn save_pending(&self, set: &std::collections::BTreeSet<String>) {
        if let Ok(text) = serde_json::to_string(set) {
            if let Err(e) = crate::files::write_atomically(&self.pending_path, text.as_bytes()) {
                tracing::error!(path = %self.pending_path.display(), error = %e, "cannot save the pending subscriptions");
            }
        }
    }

    pub fn is_pending(&self, arn: &str) -> bool {
        self.pending
            .lock()
            .map(|p| p.contains(arn))
            .unwrap_or(false)
    }

    /// Confirms a pending subscription (the link in its confirmation mail). Returns whether
    /// it was pending.
    pub fn confirm(&self, arn: &str) -> bool {
        let Ok(mut p) = self.pending.lock() else {
            return false;
        };
        let was = p.remove(arn);
        self.save_pending(&p);
        was
    }

    fn add_pending(&self, arn: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(arn.to_string());
            self.save_pending(&p);
        }
    }

    /// SNS list answers show an unconfirmed subscription's ARN as `PendingConfirmation`.
    pub fn mask_pending(&self, xml: &str) -> String {
        let Ok(p) = self.pending.lock() else {
            return xml.to_string();
        };
        let mut out = xml.to_string();
        for arn in p.iter() {
            out = out.replace(
                &format!("<SubscriptionArn>{arn}</SubscriptionArn>"),
                "<SubscriptionArn>PendingConfirmation</SubscriptionArn>",
            );
        }
        out
    }

    pub fn append(&self, mail: &Value) {
        let Ok(_g) = self.lock.lock() else { return };
        if let Some(d) = self.path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        // A crash mid-append leaves a torn last line: start on a fresh one (the reader skips
        // what does not parse), and write each mail with one call.
        let torn = std::fs::read(&self.path)
            .ok()
            .is_some_and(|b| b.last().is_some_and(|c| *c != b'\n'));
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let line = format!("{}{mail}\n", if torn { "\n" } else { "" });
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::error!(path = %self.path.display(), error = %e, "cannot append mail to the outbox");
            }
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

/// After SNS answered through the front door: mail for Publish and Subscribe, and the
/// response rewritten where SNS itself would answer differently from moto (an email
/// subscription is pending until confirmed).
pub async fn after(cloud: &Cloud, req: &Req, resp: &mut Buffered) {
    let form = req.form();
    let get = |k: &str| form.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    match get("Action").as_deref() {
        Some("Publish") => {
            let Some(topic) = get("TopicArn").or_else(|| get("TargetArn")) else {
                return;
            };
            let (recipients, pending) = email_subscribers(cloud, &topic).await;
            let body = String::from_utf8_lossy(&resp.body);
            cloud.outbox.append(&json!({
                "time": crate::httpx::now_iso(),
                "topic_arn": topic,
                "subject": get("Subject").unwrap_or_default(),
                "body": get("Message").unwrap_or_default(),
                "recipients": recipients,
                "not_delivered_pending_confirmation": pending,
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
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            let Some(arn) = xml_tag(&body, "SubscriptionArn").filter(|a| a.starts_with("arn:"))
            else {
                return;
            };
            // An address that is already confirmed stays confirmed (SNS answers its ARN).
            let known = cloud.outbox.list().iter().any(|m| {
                m["kind"] == "subscription-confirmation" && m["subscription_arn"] == arn.as_str()
            });
            if known && !cloud.outbox.is_pending(&arn) {
                return;
            }
            cloud.outbox.add_pending(&arn);
            let link = format!(
                "{}/_localcloud/sns/confirm?arn={}",
                cloud.front_url,
                percent_encoding::utf8_percent_encode(&arn, percent_encoding::NON_ALPHANUMERIC)
            );
            cloud.outbox.append(&json!({
                "time": crate::httpx::now_iso(),
                "topic_arn": topic,
                "subject": "AWS Notification - Subscription Confirmation",
                "body": format!(
                    "You have chosen to subscribe to the topic:\n{topic}\n\nTo confirm this subscription, click or visit the link below (if this was in error no action is necessary):\n{link}\n"
                ),
                "recipients": [endpoint],
                "kind": "subscription-confirmation",
                "subscription_arn": arn,
                "confirm_url": link,
            }));
            // SNS answers an email subscription with "pending confirmation" unless asked for
            // the ARN.
            if get("ReturnSubscriptionArn").as_deref() != Some("true") {
                resp.body = body
                    .replace(
                        &format!("<SubscriptionArn>{arn}</SubscriptionArn>"),
                        "<SubscriptionArn>pending confirmation</SubscriptionArn>",
                    )
                    .into();
                resp.headers.remove("content-length");
            }
        }
        Some("ListSubscriptions" | "ListSubscriptionsByTopic") => {
            let body = String::from_utf8_lossy(&resp.body).into_owned();
            let masked = cloud.outbox.mask_pending(&body);
            if masked != body {
                resp.body = masked.into();
                resp.headers.remove("content-length");
            }
        }
        _ => {}
    }
}

/// The topic's email subscribers: (confirmed, pending confirmation).
async fn email_subscribers(cloud: &Cloud, topic: &str) -> (Vec<String>, Vec<String>) {
    let sns = aws_sdk_sns::Client::new(&cloud.moto);
    let mut out = Vec::new();
    let mut pending = Vec::new();
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
                    if s.subscription_arn()
                        .is_some_and(|a| cloud.outbox.is_pending(a))
                    {
                        pending.push(e.to_string());
                    } else {
                        out.push(e.to_string());
                    }
                }
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    (out, pending)
}
