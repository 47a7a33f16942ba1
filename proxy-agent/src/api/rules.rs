//! IP Access Rules: `/zones/{zone}/firewall/access_rules/rules[/{rule_id}]`,
//! listed, created, patched and deleted, in Cloudflare's shape.
use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

use axum::{body::Bytes, extract::State};
use serde::Serialize;
use serde_json::Value;

use super::change::{self, submit};
use super::error::{ApiError, Envelope};
use super::extract::{Collection, Object, Page, Zone, json_body};
use super::{ApiState, RULES};
use crate::config::model::{AccessRule, Config, RuleAction, RuleTarget};

/// The access rules of the zone.
pub struct Rules;

impl Collection for Rules {
    const ROUTE: &'static str = RULES;
}

/// A rule in Cloudflare's shape.
#[derive(Debug, Serialize)]
pub struct RuleJson {
    id: String,
    mode: &'static str,
    configuration: Configuration,
    notes: String,
    created_on: Option<String>,
    modified_on: Option<String>,
}

#[derive(Debug, Serialize)]
struct Configuration {
    target: &'static str,
    value: String,
}

/// `rule` in Cloudflare's shape.
pub fn rule_json(rule: &AccessRule) -> RuleJson {
    let mode = match rule.action {
        RuleAction::Allow => "whitelist",
        RuleAction::Block => "block",
    };
    let (target, value) = match &rule.target {
        RuleTarget::Ip(ip @ IpAddr::V4(_)) => ("ip", ip.to_string()),
        RuleTarget::Ip(ip) => ("ip6", ip.to_string()),
        RuleTarget::Range(net) => ("ip_range", net.to_string()),
        RuleTarget::Asn(asn) => ("asn", format!("AS{asn}")),
        RuleTarget::Country(code) => ("country", code.clone()),
    };
    RuleJson {
        id: rule.id.clone(),
        mode,
        configuration: Configuration { target, value },
        notes: rule.notes.clone().unwrap_or_default(),
        created_on: rule.created_on.clone(),
        modified_on: rule.modified_on.clone(),
    }
}

/// A rule a change wrote: in Cloudflare's shape when in force, else (a
/// mode Spectrum ignores, such as challenges) as the file holds it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Written {
    InForce(RuleJson),
    Stored(Value),
}

pub async fn list(
    State(state): State<ApiState>,
    _: Zone<Rules>,
    page: Page,
) -> Envelope<Vec<RuleJson>> {
    page.of(&state.config().access_rules, rule_json)
}

// The handlers with a body take the path as a `Result`: see [`Zone`].

pub async fn create(
    State(state): State<ApiState>,
    zone: Result<Zone<Rules>, ApiError>,
    body: Bytes,
) -> Result<Envelope<Written>, ApiError> {
    zone?;
    let body = json_body(&body)?;
    let stored = Entry::default();
    let keep = stored.clone();
    let (config, id) = submit(&state, move |doc, now| {
        let id = doc.add_rule(body, now)?;
        keep.put(doc.rule(&id));
        Ok(id)
    })
    .await?;
    Ok(rule_answer(&config, &id, &stored))
}

pub async fn patch(
    State(state): State<ApiState>,
    rule: Result<Object<Rules>, ApiError>,
    body: Bytes,
) -> Result<Envelope<Written>, ApiError> {
    let Object { id, .. } = rule?;
    let body = json_body(&body)?;
    let stored = Entry::default();
    let keep = stored.clone();
    let (config, id) = submit(&state, move |doc, now| {
        doc.patch_rule(&id, body, now)?;
        keep.put(doc.rule(&id));
        Ok(id)
    })
    .await?;
    Ok(rule_answer(&config, &id, &stored))
}

pub async fn delete(
    State(state): State<ApiState>,
    rule: Object<Rules>,
) -> Result<Envelope<change::Deleted>, ApiError> {
    change::delete(&state, rule.id, |doc, id| doc.delete_rule(id)).await
}

/// Where an edit leaves the file's entry of the rule it wrote.
#[derive(Clone, Default)]
struct Entry(Arc<Mutex<Option<Value>>>);

impl Entry {
    fn put(&self, entry: Option<Value>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = entry;
        }
    }

    fn take(&self) -> Option<Value> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The rule a change created or changed, as it now runs, or as the file
/// holds it when it is not in force.
fn rule_answer(config: &Config, id: &str, stored: &Entry) -> Envelope<Written> {
    if let Some(rule) = config
        .access_rules
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id))
    {
        return Envelope::ok(Written::InForce(rule_json(rule)));
    }
    let mut result = stored.take().unwrap_or_else(|| serde_json::json!({}));
    result["id"] = id.into();
    if result.get("notes").is_none_or(Value::is_null) {
        result["notes"] = "".into();
    }
    for field in ["created_on", "modified_on"] {
        if result.get(field).is_none() {
            result[field] = Value::Null;
        }
    }
    Envelope::ok(Written::Stored(result))
}
