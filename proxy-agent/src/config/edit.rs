//! Edits of the config *document*: the file as a JSON value tree, in its
//! own format (JSON or TOML), changed the way the management API's write
//! endpoints ask (add, replace or delete an app; add, patch or delete an
//! access rule) and written back atomically.
//!
//! Pure data work, but for [`Document::read`] and [`Document::write_atomic`]:
//! nothing here validates a whole config or puts one in force. A body is
//! checked only for its shape (the schema's field names and types), so a
//! misspelt field is named at once; the caller then validates the edited
//! document as a whole config before writing it.
//!
//! Apps and rules are found by their `id` field: call [`Document::pin_ids`]
//! first, so that those written without one carry the id validation gave
//! them.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::UtcDateTime;

use super::model::{AccessRule, Config};
use super::schema::{AccessRuleFile, AppFile};

/// A JSON object: an app, a rule, or the top level of the document.
type Object = Map<String, Value>;

const APPS: &str = "apps";
const RULES: &str = "access_rules";
const APP: &str = "app";
const RULE: &str = "access rule";

/// Fields of an app that a client may send back from a GET and that are
/// not taken from it: the timestamps are the API's, `edge_addresses` is
/// no config field.
const APP_READ_ONLY: &[&str] = &["edge_addresses", "created_on", "modified_on"];

/// Fields of a rule that a client may send back from a GET (or from a
/// Cloudflare export) and that are not taken from it.
const RULE_READ_ONLY: &[&str] = &["created_on", "modified_on", "allowed_modes", "scope"];

/// What a PATCH of a rule may change.
const RULE_PATCHABLE: &[&str] = &["mode", "notes"];

/// TOML's datetimes reach a `serde_json::Value` as a one-field object
/// under this key.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

/// A config file as a JSON value tree, in its own format (JSON or TOML).
///
/// The two lists the API edits are kept apart from the rest of the top
/// level, each entry an object (checked by [`Document::parse`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Every top-level field but `apps` and `access_rules`.
    rest: Object,
    /// `apps`; `None` when the file has no such field.
    apps: Option<Vec<Object>>,
    /// `access_rules`; `None` when the file has no such field.
    rules: Option<Vec<Object>>,
    toml: bool,
}

/// Why an edit was refused; the document is unchanged then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// No app / rule with that id (-> 404 code 10006).
    #[error("no {kind} with id {id:?}")]
    NotFound { kind: &'static str, id: String },
    /// The body is not an object of the right shape: which field (a path
    /// such as `dns.name`, empty for the body itself) and why (-> 400 code
    /// 7000).
    #[error("{field}{}{message}", field_separator(.field))]
    Shape { field: String, message: String },
    /// Refused by a rule of the API itself: a duplicate id, an id in the
    /// body that differs from the path's (-> 400 code 1004).
    #[error("{field}: {value:?}: {message}")]
    Invalid {
        field: String,
        value: String,
        message: String,
    },
}

/// What stands between a [`EditError::Shape`] field and its message:
/// nothing when the field is empty (the body itself).
fn field_separator(field: &str) -> &'static str {
    if field.is_empty() { "" } else { ": " }
}

impl Document {
    /// Reads the config file at `path`: TOML when its extension is `.toml`
    /// (any case), JSON otherwise, as `config::load` decides.
    pub fn read(path: &Path) -> anyhow::Result<Document> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config {}", path.display()))?;
        Document::parse(&text, is_toml_path(path))
            .map_err(|reason| anyhow::anyhow!("config {}: {reason}", path.display()))
    }

    /// Parses a config text; `toml` chooses the format. Only the outline
    /// is checked: an object whose `apps` and `access_rules`, when present,
    /// are arrays of objects.
    pub fn parse(text: &str, toml: bool) -> Result<Document, String> {
        let value = if toml {
            let value: Value = toml::from_str(text).map_err(|e| format!("not TOML: {e}"))?;
            toml_datetimes_as_strings(value)
        } else {
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?
        };
        Document::from_value(value, toml)
    }

    /// Splits a top-level value into the lists and the rest.
    fn from_value(value: Value, toml: bool) -> Result<Document, String> {
        let Value::Object(mut rest) = value else {
            return Err(format!("the config is {}, not an object", kind_of(&value)));
        };
        let apps = take_list(&mut rest, APPS)?;
        let rules = take_list(&mut rest, RULES)?;
        Ok(Document {
            rest,
            apps,
            rules,
            toml,
        })
    }

    /// Whether the document is written as TOML (else JSON).
    pub fn is_toml(&self) -> bool {
        self.toml
    }

    /// The whole document as one value (what `render` writes).
    pub fn value(&self) -> Value {
        let mut root = self.rest.clone();
        for (key, list) in [(APPS, &self.apps), (RULES, &self.rules)] {
            if let Some(items) = list {
                let items = items.iter().cloned().map(Value::Object).collect();
                root.insert(key.to_string(), Value::Array(items));
            }
        }
        Value::Object(root)
    }

    /// The rule `id` as the document holds it (ids matched as the edits
    /// match them: exactly, else in any case).
    pub fn rule(&self, id: &str) -> Option<Value> {
        let rules = self.rules.as_deref()?;
        let index = position(rules, id)?;
        rules.get(index).cloned().map(Value::Object)
    }

    /// The text of the document in its format: JSON pretty-printed with a
    /// final newline, or TOML (which has no null: null fields are left
    /// out, as absent ones mean the same in the schema).
    pub fn render(&self) -> anyhow::Result<String> {
        let value = self.value();
        if self.toml {
            toml::to_string_pretty(&without_null_fields(value))
                .context("cannot write the config as TOML")
        } else {
            let mut text =
                serde_json::to_string_pretty(&value).context("cannot write the config as JSON")?;
            text.push('\n');
            Ok(text)
        }
    }

    /// Writes the document to `path` atomically: a temporary file in the
    /// same directory with the old file's permissions (and owner, when the
    /// process may give it), fsync, rename over the old file, fsync of the
    /// directory. A crash leaves the old file or the new one, never a torn
    /// one. When `path` is a symlink, its target is replaced and the link
    /// stays.
    pub fn write_atomic(&self, path: &Path) -> anyhow::Result<()> {
        let text = self.render()?;
        let path = through_symlink(path);
        // A new config file is private: it may name key files.
        super::write_atomically(&path, text.as_bytes(), 0o600)
            .with_context(|| format!("cannot write config {}", path.display()))
    }

    /// Gives every app and rule without an `id` the id the validated
    /// config gave it, so that the API can find it and the id stays the
    /// same whatever is added in front of it.
    ///
    /// `config` must be the validated form of this very document: apps
    /// are matched by position (nothing is pinned when the counts differ).
    /// Rules get [`AccessRule::derived_id`] computed as validation does;
    /// rules whose mode validation ignores (challenges) get one too, so
    /// that every rule in the file has an id.
    pub fn pin_ids(&mut self, config: &Config) {
        if let Some(apps) = &mut self.apps
            && apps.len() == config.apps.len()
        {
            for (app, model) in apps.iter_mut().zip(&config.apps) {
                if id_of(app).is_none() {
                    app.insert("id".to_string(), model.id.to_string().into());
                }
            }
        }
        if let Some(rules) = &mut self.rules {
            let derived = derived_rule_ids(rules);
            for (rule, id) in rules.iter_mut().zip(derived) {
                if let Some(id) = id {
                    rule.insert("id".to_string(), id.into());
                }
            }
        }
    }

    /// Adds an app at the end of `apps` (created when absent) and returns
    /// its id: the body's, or a random 32-hex one. `created_on` and
    /// `modified_on` are `now`.
    pub fn add_app(&mut self, body: Value, now: &str) -> Result<String, EditError> {
        let mut app = body_object(body, APP_READ_ONLY)?;
        check_shape::<AppFile>(&app)?;
        let apps = self.apps.get_or_insert_with(Vec::new);
        let id = new_id(apps, &app, APP)?;
        stamp(&mut app, &id, now, now);
        apps.push(app);
        Ok(id)
    }

    /// Replaces the app `id` by the body, in the same place: the id (as
    /// the file spells it) and `created_on` are kept (`now` when the app
    /// had none), `modified_on` is `now`. An `id` in the body must be the
    /// same (any case).
    pub fn replace_app(&mut self, id: &str, body: Value, now: &str) -> Result<(), EditError> {
        let old = entry_mut(&mut self.apps, id, APP)?;
        let mut app = body_object(body, APP_READ_ONLY)?;
        check_shape::<AppFile>(&app)?;
        same_id(&app, id)?;
        let stored_id = id_of(old).unwrap_or(id).to_string();
        let created_on = created_on(old, now);
        stamp(&mut app, &stored_id, &created_on, now);
        *old = app;
        Ok(())
    }

    /// Removes the app `id`.
    pub fn delete_app(&mut self, id: &str) -> Result<(), EditError> {
        remove(&mut self.apps, id, APP)
    }

    /// Adds a rule at the end of `access_rules` (created when absent) and
    /// returns its id: the body's, or a random 32-hex one. `created_on`
    /// and `modified_on` are `now`.
    pub fn add_rule(&mut self, body: Value, now: &str) -> Result<String, EditError> {
        let mut rule = body_object(body, RULE_READ_ONLY)?;
        check_shape::<AccessRuleFile>(&rule)?;
        let rules = self.rules.get_or_insert_with(Vec::new);
        let id = new_id(rules, &rule, RULE)?;
        stamp(&mut rule, &id, now, now);
        rules.push(rule);
        Ok(id)
    }

    /// Changes the `mode` and/or `notes` of the rule `id` (a null `notes`
    /// removes them); `modified_on` is `now`. Any other field in the body
    /// is refused.
    pub fn patch_rule(&mut self, id: &str, body: Value, now: &str) -> Result<(), EditError> {
        let rule = entry_mut(&mut self.rules, id, RULE)?;
        let patch = rule_patch(body)?;
        for (key, value) in patch {
            if value.is_null() {
                rule.remove(&key);
            } else {
                rule.insert(key, value);
            }
        }
        let created_on = created_on(rule, now);
        rule.insert("created_on".to_string(), created_on.into());
        rule.insert("modified_on".to_string(), now.into());
        Ok(())
    }

    /// Removes the rule `id`.
    pub fn delete_rule(&mut self, id: &str) -> Result<(), EditError> {
        remove(&mut self.rules, id, RULE)
    }
}

/// Whether a config path is read as TOML: its extension, in any case.
fn is_toml_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"))
}

/// Takes the list `key` out of the top level: absent is `None`, anything
/// but an array of objects is refused.
fn take_list(root: &mut Object, key: &str) -> Result<Option<Vec<Object>>, String> {
    let Some(list) = root.remove(key) else {
        return Ok(None);
    };
    let Value::Array(items) = list else {
        return Err(format!("{key} is {}, not an array", kind_of(&list)));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(object) => Ok(object),
            other => Err(format!("{key}[{i}] is {}, not an object", kind_of(&other))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// How an error names the kind of a value.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value with every null field of every object left out (array
/// elements stay: a null there is an error the schema names).
fn without_null_fields(value: Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(without_nulls(object)),
        Value::Array(items) => Value::Array(items.into_iter().map(without_null_fields).collect()),
        other => other,
    }
}

/// An object without its null fields, at every depth.
fn without_nulls(object: Object) -> Object {
    object
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, without_null_fields(v)))
        .collect()
}

/// TOML datetimes (e.g. an unquoted `created_on`) as the RFC 3339
/// strings they are, so they read as timestamps and write back as TOML.
fn toml_datetimes_as_strings(value: Value) -> Value {
    match value {
        Value::Object(object) => {
            if object.len() == 1
                && let Some(Value::String(text)) = object.get(TOML_DATETIME_KEY)
            {
                return Value::String(text.clone());
            }
            Value::Object(
                object
                    .into_iter()
                    .map(|(k, v)| (k, toml_datetimes_as_strings(v)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(toml_datetimes_as_strings).collect())
        }
        other => other,
    }
}

// ---- ids ----

/// The `id` of an app or rule, when it has one (a string).
fn id_of(item: &Object) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

/// Where the item `id` is: the one spelt so, else one that differs only
/// in case (app ids are hex; Cloudflare writes them lowercase).
fn position(items: &[Object], id: &str) -> Option<usize> {
    items
        .iter()
        .position(|item| id_of(item) == Some(id))
        .or_else(|| {
            items
                .iter()
                .position(|item| id_of(item).is_some_and(|own| own.eq_ignore_ascii_case(id)))
        })
}

/// Whether some item has `id`, in any case.
fn id_taken(items: &[Object], id: &str) -> bool {
    items
        .iter()
        .any(|item| id_of(item).is_some_and(|own| own.eq_ignore_ascii_case(id)))
}

fn not_found(kind: &'static str, id: &str) -> EditError {
    EditError::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// The item `id` of a list (an absent list holds none).
fn entry_mut<'a>(
    list: &'a mut Option<Vec<Object>>,
    id: &str,
    kind: &'static str,
) -> Result<&'a mut Object, EditError> {
    let items = list.as_deref_mut().unwrap_or_default();
    let index = position(items, id).ok_or_else(|| not_found(kind, id))?;
    items.get_mut(index).ok_or_else(|| not_found(kind, id))
}

/// Removes the item `id` of a list.
fn remove(list: &mut Option<Vec<Object>>, id: &str, kind: &'static str) -> Result<(), EditError> {
    let items = list.as_mut().ok_or_else(|| not_found(kind, id))?;
    let index = position(items, id).ok_or_else(|| not_found(kind, id))?;
    items.remove(index);
    Ok(())
}

/// The id of a new item: the body's unless another item has it, else a
/// random one no item has.
fn new_id(items: &[Object], body: &Object, kind: &str) -> Result<String, EditError> {
    match id_of(body) {
        Some(id) if id_taken(items, id) => Err(EditError::Invalid {
            field: "id".to_string(),
            value: id.to_string(),
            message: format!("another {kind} has this id"),
        }),
        Some(id) => Ok(id.to_string()),
        None => Ok(fresh_id(items)),
    }
}

/// Refuses a body whose `id` is not `id` (in any case).
fn same_id(body: &Object, id: &str) -> Result<(), EditError> {
    match id_of(body) {
        Some(own) if !own.eq_ignore_ascii_case(id) => Err(EditError::Invalid {
            field: "id".to_string(),
            value: own.to_string(),
            message: format!("differs from the id in the path, {id}"),
        }),
        _ => Ok(()),
    }
}

/// The ids validation derives for the rules written without one
/// (`None` for those that have one), as `validate`'s `access_rules` does:
/// from mode, target and value, and the rank among earlier rules without
/// an id with the same mode, target and value (any case).
fn derived_rule_ids(rules: &[Object]) -> Vec<Option<String>> {
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            if id_of(rule).is_some() {
                return None;
            }
            let (mode, target, value) = rule_key(rule)?;
            let nth = rules[..i]
                .iter()
                .filter(|earlier| id_of(earlier).is_none())
                .filter_map(rule_key)
                .filter(|&(m, t, v)| m == mode && t == target && v.eq_ignore_ascii_case(value))
                .count();
            Some(AccessRule::derived_id(mode, target, value, nth))
        })
        .collect()
}

/// A rule's mode, target and value.
fn rule_key(rule: &Object) -> Option<(&str, &str, &str)> {
    let configuration = rule.get("configuration")?;
    Some((
        rule.get("mode")?.as_str()?,
        configuration.get("target")?.as_str()?,
        configuration.get("value")?.as_str()?,
    ))
}

/// A random id of 32 lowercase hex digits that no item has.
fn fresh_id(items: &[Object]) -> String {
    loop {
        let id: String = random_bytes().iter().map(|b| format!("{b:02x}")).collect();
        if !id_taken(items, &id) {
            return id;
        }
    }
}

/// 16 random bytes from the kernel; should /dev/urandom be unreadable
/// (a bare chroot), from std's randomly keyed hasher over the time and a
/// counter: unique, which is all an id needs.
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    let from_kernel = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if from_kernel.is_ok() {
        return bytes;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for half in bytes.chunks_exact_mut(8) {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u64(count);
        half.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    bytes
}

// ---- bodies ----

/// The body as an object, without the fields the API sets itself and
/// without null fields (absent, as TOML would have them).
fn body_object(body: Value, read_only: &[&str]) -> Result<Object, EditError> {
    let Value::Object(mut object) = body else {
        return Err(EditError::Shape {
            field: String::new(),
            message: format!("expected an object, got {}", kind_of(&body)),
        });
    };
    for key in read_only {
        object.remove(*key);
    }
    Ok(without_nulls(object))
}

/// Refuses a body that the schema type `T` does not read, naming the
/// field (`dns.name`, `origin_direct[1]`) and the reason.
fn check_shape<T: DeserializeOwned>(body: &Object) -> Result<(), EditError> {
    serde_path_to_error::deserialize::<_, T>(Value::Object(body.clone()))
        .map(drop)
        .map_err(|e| {
            let path = e.path().to_string();
            // serde_path_to_error writes the top level as ".".
            let field = if path == "." { String::new() } else { path };
            EditError::Shape {
                field,
                message: e.into_inner().to_string(),
            }
        })
}

/// The fields of a rule PATCH: `mode` (a string) and `notes` (a string,
/// or null to remove them), nothing else.
fn rule_patch(body: Value) -> Result<Object, EditError> {
    let Value::Object(patch) = body else {
        return Err(EditError::Shape {
            field: String::new(),
            message: format!("expected an object, got {}", kind_of(&body)),
        });
    };
    for (key, value) in &patch {
        let shape = |message: String| EditError::Shape {
            field: key.clone(),
            message,
        };
        if !RULE_PATCHABLE.contains(&key.as_str()) {
            return Err(shape(format!(
                "unknown field `{key}`, expected `mode` or `notes` (only they can be changed)"
            )));
        }
        let fits = value.is_string() || (key == "notes" && value.is_null());
        if !fits {
            return Err(shape(format!(
                "invalid type: {}, expected a string",
                kind_of(value)
            )));
        }
    }
    Ok(patch)
}

/// An item's `created_on`, or `now` when it has none.
fn created_on(item: &Object, now: &str) -> String {
    item.get("created_on")
        .and_then(Value::as_str)
        .unwrap_or(now)
        .to_string()
}

/// Sets the fields the API keeps: id and timestamps.
fn stamp(item: &mut Object, id: &str, created_on: &str, modified_on: &str) {
    item.insert("id".to_string(), id.into());
    item.insert("created_on".to_string(), created_on.into());
    item.insert("modified_on".to_string(), modified_on.into());
}

// ---- files ----

/// `path`, or the file it points to when it is a symlink.
fn through_symlink(path: &Path) -> PathBuf {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    } else {
        path.to_path_buf()
    }
}

// ---- time ----

/// Now as RFC 3339 UTC with microseconds, as Cloudflare writes
/// timestamps: `2026-11-26T08:30:00.123456Z`.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `time` as RFC 3339 UTC with microseconds (times before 1970 too),
/// cut to the microsecond toward 1970. The `time` crate does the
/// calendar; the layout stays one `format!`: always six fractional
/// digits, as the API has always written them, where `time`'s `Rfc3339`
/// drops trailing zeros, and a format description would return a
/// `Result` for what cannot fail here. Instants beyond the years -9999
/// to 9999 are clamped to them.
pub fn rfc3339(time: SystemTime) -> String {
    let micros = unix_micros(time);
    let at = UtcDateTime::from_unix_timestamp_nanos(micros.saturating_mul(1000)).unwrap_or(
        if micros < 0 {
            UtcDateTime::MIN
        } else {
            UtcDateTime::MAX
        },
    );
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// Microseconds since 1970 (negative before), what is below a
/// microsecond dropped.
fn unix_micros(time: SystemTime) -> i128 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_micros()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_micros()).map_or(i128::MIN, |m| -m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use serde_json::json;
    use std::fmt;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    const NOW: &str = "2026-11-26T08:30:00.123456Z";
    const LATER: &str = "2026-11-27T09:00:00.000001Z";
    const SSH_ID: &str = "0123456789abcdef0123456789abcdef";

    /// A valid config: an app with an id and one without; rules with an
    /// id, two identical ones without (ranked by `nth`), a challenge rule
    /// validation leaves out, and an allow rule.
    const JSON_DOC: &str = r#"{
      "edge": {"interfaces": ["eth0"],
               "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}},
      "apps": [
        {"id": "0123456789abcdef0123456789abcdef", "protocol": "tcp/22",
         "dns": {"type": "CNAME", "name": "ssh.example.com"},
         "origin_direct": ["tcp://192.0.2.1:22"]},
        {"protocol": "tcp/25", "dns": {"type": "ADDRESS", "name": "mail.example.com"},
         "origin_direct": ["tcp://192.0.2.1:25"], "origin_sni": null,
         "edge_ips": {"type": "static", "ips": ["198.51.100.200"]}}
      ],
      "access_rules": [
        {"id": "r1", "mode": "block", "configuration": {"target": "ip", "value": "192.0.2.9"}},
        {"mode": "block", "configuration": {"target": "ip", "value": "192.0.2.10"}},
        {"mode": "challenge", "configuration": {"target": "ip", "value": "192.0.2.11"}},
        {"mode": "block", "configuration": {"target": "ip", "value": "192.0.2.10"}},
        {"mode": "whitelist", "configuration": {"target": "ip_range", "value": "192.0.2.0/24"},
         "notes": "office"}
      ]
    }"#;

    /// The same config in TOML.
    const TOML_DOC: &str = r#"
access_rules = [
  { id = "r1", mode = "block", configuration = { target = "ip", value = "192.0.2.9" } },
  { mode = "block", configuration = { target = "ip", value = "192.0.2.10" } },
  { mode = "challenge", configuration = { target = "ip", value = "192.0.2.11" } },
  { mode = "block", configuration = { target = "ip", value = "192.0.2.10" } },
  { mode = "whitelist", configuration = { target = "ip_range", value = "192.0.2.0/24" }, notes = "office" },
]

[edge]
interfaces = ["eth0"]
address_pool = { ipv4 = "198.51.100.0/24", ipv6 = "2001:db8:e::/64" }

[[apps]]
id = "0123456789abcdef0123456789abcdef"
protocol = "tcp/22"
dns = { type = "CNAME", name = "ssh.example.com" }
origin_direct = ["tcp://192.0.2.1:22"]

[[apps]]
protocol = "tcp/25"
dns = { type = "ADDRESS", name = "mail.example.com" }
origin_direct = ["tcp://192.0.2.1:25"]
edge_ips = { type = "static", ips = ["198.51.100.200"] }
"#;

    /// A document of `text` with its ids pinned from its validation.
    fn pinned(text: &str, toml: bool) -> Document {
        let config = load_str(text, toml).expect("valid config").config;
        let mut doc = Document::parse(text, toml).expect("parses");
        doc.pin_ids(&config);
        doc
    }

    fn both() -> [Document; 2] {
        [pinned(JSON_DOC, false), pinned(TOML_DOC, true)]
    }

    /// Renders, validates and parses back: the document is a valid config
    /// whose text reads back as the same document.
    fn round_trip(doc: &Document) -> crate::config::Config {
        let text = doc.render().expect("renders");
        let back = Document::parse(&text, doc.is_toml()).expect("reads back");
        assert_eq!(&back, doc, "{text}");
        load_str(&text, doc.is_toml())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .config
    }

    fn apps(doc: &Document) -> &[Object] {
        doc.apps.as_deref().expect("apps")
    }

    fn rules(doc: &Document) -> &[Object] {
        doc.rules.as_deref().expect("rules")
    }

    fn new_app() -> Value {
        json!({
            "protocol": "udp/53",
            "dns": {"type": "CNAME", "name": "dns.example.com"},
            "origin_direct": ["udp://192.0.2.2:53"],
            "edge_addresses": ["198.51.100.3"],
            "created_on": "2001-01-01T00:00:00Z",
            "modified_on": "2001-01-01T00:00:00Z",
            "tls": null
        })
    }

    fn new_rule() -> Value {
        json!({
            "mode": "block",
            "configuration": {"target": "ip6", "value": "2001:db8::66"},
            "notes": "spam",
            "allowed_modes": ["block", "whitelist"],
            "scope": {"type": "zone"},
            "created_on": "2001-01-01T00:00:00Z"
        })
    }

    fn shape_field(result: Result<impl fmt::Debug, EditError>) -> String {
        match result {
            Err(EditError::Shape { field, .. }) => field,
            other => panic!("expected a shape error, got {other:?}"),
        }
    }

    #[test]
    fn pin_ids_gives_the_ids_validation_gives() {
        for text_toml in [(JSON_DOC, false), (TOML_DOC, true)] {
            let (text, toml) = text_toml;
            let config = load_str(text, toml).unwrap().config;
            let doc = pinned(text, toml);
            let app_ids: Vec<_> = apps(&doc).iter().map(|a| id_of(a).unwrap()).collect();
            let want: Vec<_> = config.apps.iter().map(|a| a.id.to_string()).collect();
            assert_eq!(app_ids, want);
            assert_eq!(app_ids[0], SSH_ID);
            // Kept rules: all but the challenge (index 2).
            let kept: Vec<_> = rules(&doc)
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != 2)
                .map(|(_, r)| id_of(r).unwrap())
                .collect();
            let want: Vec<_> = config.access_rules.iter().map(|r| r.id.as_str()).collect();
            assert_eq!(kept, want);
            assert_ne!(kept[1], kept[2], "identical rules get distinct ids");
            // The challenge rule carries an id too.
            assert_eq!(id_of(&rules(&doc)[2]).map(str::len), Some(32));
            // Validating the pinned document gives the same config.
            assert_eq!(round_trip(&doc), config);
        }
    }

    #[test]
    fn pin_ids_ranks_identical_rules_as_validation_does() {
        let text = r#"{"edge": {"interfaces": ["eth0"]}, "access_rules": [
            {"id": "x", "mode": "block", "configuration": {"target": "ip6", "value": "2001:db8::1"}},
            {"mode": "block", "configuration": {"target": "ip6", "value": "2001:DB8::1"}},
            {"mode": "allow", "configuration": {"target": "ip6", "value": "2001:db8::1"}},
            {"mode": "block", "configuration": {"target": "ip_range", "value": "2001:db8::1/128"}},
            {"mode": "block", "configuration": {"target": "ip6", "value": "2001:db8::1"}}
        ]}"#;
        let config = load_str(text, false).unwrap().config;
        let doc = pinned(text, false);
        let ids: Vec<_> = rules(&doc).iter().map(|r| id_of(r).unwrap()).collect();
        let want: Vec<_> = config.access_rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, want);
        assert_eq!(
            ids[4],
            AccessRule::derived_id("block", "ip6", "2001:db8::1", 1)
        );
    }

    #[test]
    fn pin_ids_leaves_apps_alone_when_the_config_is_another() {
        let config = load_str(JSON_DOC, false).unwrap().config;
        let mut doc = Document::parse(
            r#"{"edge": {}, "apps": [{"protocol": "tcp/1", "dns": {"type": "CNAME", "name": "x"}}]}"#,
            false,
        )
        .unwrap();
        doc.pin_ids(&config);
        assert_eq!(id_of(&apps(&doc)[0]), None);
    }

    #[test]
    fn add_app_gives_a_random_id_and_timestamps() {
        for mut doc in both() {
            let before = apps(&doc).len();
            let id = doc.add_app(new_app(), NOW).unwrap();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            let app = &apps(&doc)[before];
            assert_eq!(id_of(app), Some(id.as_str()));
            assert_eq!(app["created_on"], NOW);
            assert_eq!(app["modified_on"], NOW);
            for gone in ["edge_addresses", "tls"] {
                assert!(!app.contains_key(gone), "{gone} kept: {app:?}");
            }
            let config = round_trip(&doc);
            let added = &config.apps[before];
            assert_eq!(added.id.to_string(), id);
            assert_eq!(added.created_on.as_deref(), Some(NOW));

            let other = doc
                .add_app(
                    json!({"protocol": "udp/54", "dns": {"type": "CNAME", "name": "d2.example.com"},
                           "origin_direct": ["udp://192.0.2.2:54"]}),
                    NOW,
                )
                .unwrap();
            assert_ne!(other, id);
        }
    }

    #[test]
    fn add_app_keeps_the_body_id_and_refuses_a_taken_one() {
        for mut doc in both() {
            let mut body = new_app();
            body["id"] = json!("FEDCBA9876543210fedcba9876543210");
            let id = doc.add_app(body, NOW).unwrap();
            assert_eq!(id, "FEDCBA9876543210fedcba9876543210");
            round_trip(&doc);

            let unchanged = doc.clone();
            let mut body = new_app();
            body["id"] = json!(SSH_ID.to_uppercase());
            assert_eq!(
                doc.add_app(body, NOW),
                Err(EditError::Invalid {
                    field: "id".into(),
                    value: SSH_ID.to_uppercase(),
                    message: "another app has this id".into(),
                })
            );
            assert_eq!(doc, unchanged);
        }
    }

    #[test]
    fn add_to_a_document_without_lists_creates_them() {
        for toml in [false, true] {
            let text = if toml {
                "[edge]\ninterfaces = [\"eth0\"]\naddress_pool = { ipv4 = \"198.51.100.0/24\", ipv6 = \"2001:db8:e::/64\" }\n"
            } else {
                r#"{"edge": {"interfaces": ["eth0"], "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}"#
            };
            let mut doc = Document::parse(text, toml).unwrap();
            let app = doc.add_app(new_app(), NOW).unwrap();
            let rule = doc.add_rule(new_rule(), NOW).unwrap();
            let config = round_trip(&doc);
            assert_eq!(config.apps[0].id.to_string(), app);
            assert_eq!(config.access_rules[0].id, rule);
        }
    }

    #[test]
    fn bad_app_bodies_name_the_field_and_change_nothing() {
        let [mut doc, _] = both();
        let unchanged = doc.clone();
        assert_eq!(shape_field(doc.add_app(json!([1]), NOW)), "");
        assert!(matches!(
            doc.add_app(json!("x"), NOW),
            Err(EditError::Shape { message, .. }) if message == "expected an object, got a string"
        ));
        let mut body = new_app();
        body["dns"]["nmae"] = json!("x");
        assert_eq!(shape_field(doc.add_app(body, NOW)), "dns.nmae");
        let mut body = new_app();
        body["origin_direct"] = json!(["udp://192.0.2.2:53", 7]);
        assert_eq!(shape_field(doc.add_app(body, NOW)), "origin_direct[1]");
        let mut body = new_app();
        body["ip_firewall"] = json!("yes");
        let err = doc.add_app(body.clone(), NOW).unwrap_err();
        assert_eq!(shape_field(Err::<(), _>(err.clone())), "ip_firewall");
        assert!(
            err.to_string().starts_with("ip_firewall: invalid type"),
            "{err}"
        );
        body["ip_firewall"] = json!(true);
        body.as_object_mut().unwrap().remove("protocol");
        let err = doc.add_app(body, NOW).unwrap_err();
        assert!(
            err.to_string().contains("missing field `protocol`"),
            "{err}"
        );
        assert_eq!(doc, unchanged);
    }

    #[test]
    fn replace_app_keeps_place_id_and_created_on() {
        for mut doc in both() {
            let id = doc.add_app(new_app(), NOW).unwrap();
            let body = json!({
                "id": id.to_uppercase(),
                "protocol": "udp/5353",
                "dns": {"type": "CNAME", "name": "dns.example.com"},
                "origin_direct": ["udp://192.0.2.3:53"],
                "created_on": "1999-01-01T00:00:00Z"
            });
            doc.replace_app(&id.to_uppercase(), body, LATER).unwrap();
            let app = &apps(&doc)[2];
            assert_eq!(id_of(app), Some(id.as_str()), "the file's spelling");
            assert_eq!(app["created_on"], NOW);
            assert_eq!(app["modified_on"], LATER);
            assert_eq!(app["protocol"], "udp/5353");
            assert_eq!(app["origin_direct"], json!(["udp://192.0.2.3:53"]));
            let config = round_trip(&doc);
            assert_eq!(config.apps[2].modified_on.as_deref(), Some(LATER));

            // An app written by hand had no created_on: it gets one.
            let mail = id_of(&apps(&doc)[1]).unwrap().to_string();
            let body = json!({"protocol": "tcp/26", "dns": {"type": "ADDRESS", "name": "mail.example.com"},
                              "origin_direct": ["tcp://192.0.2.1:26"],
                              "edge_ips": {"type": "static", "ips": ["198.51.100.200"]}});
            doc.replace_app(&mail, body, LATER).unwrap();
            assert_eq!(apps(&doc)[1]["created_on"], LATER);
            assert_eq!(apps(&doc).len(), 3);
            round_trip(&doc);
        }
    }

    #[test]
    fn replace_app_refuses_another_id_an_unknown_app_and_a_bad_shape() {
        let [mut doc, _] = both();
        let unchanged = doc.clone();
        let mut body = new_app();
        body["id"] = json!("ffffffffffffffffffffffffffffffff");
        assert_eq!(
            doc.replace_app(SSH_ID, body, NOW),
            Err(EditError::Invalid {
                field: "id".into(),
                value: "ffffffffffffffffffffffffffffffff".into(),
                message: format!("differs from the id in the path, {SSH_ID}"),
            })
        );
        assert_eq!(
            doc.replace_app("ffffffffffffffffffffffffffffffff", new_app(), NOW),
            Err(EditError::NotFound {
                kind: "app",
                id: "ffffffffffffffffffffffffffffffff".into()
            })
        );
        let mut body = new_app();
        body["origin_port"] = json!(1.5);
        assert_eq!(
            shape_field(doc.replace_app(SSH_ID, body, NOW)),
            "origin_port"
        );
        assert_eq!(doc, unchanged);
    }

    #[test]
    fn delete_app_removes_only_that_app() {
        for mut doc in both() {
            let mail = id_of(&apps(&doc)[1]).unwrap().to_string();
            doc.delete_app(&SSH_ID.to_uppercase()).unwrap();
            assert_eq!(apps(&doc).len(), 1);
            assert_eq!(id_of(&apps(&doc)[0]), Some(mail.as_str()));
            assert_eq!(
                doc.delete_app(SSH_ID),
                Err(EditError::NotFound {
                    kind: "app",
                    id: SSH_ID.into()
                })
            );
            doc.delete_app(&mail).unwrap();
            let config = round_trip(&doc);
            assert!(config.apps.is_empty());
        }
        let mut bare = Document::parse(r#"{"edge": {}}"#, false).unwrap();
        assert!(matches!(
            bare.delete_app(SSH_ID),
            Err(EditError::NotFound { .. })
        ));
        assert!(matches!(
            bare.delete_rule("r1"),
            Err(EditError::NotFound {
                kind: "access rule",
                ..
            })
        ));
    }

    #[test]
    fn add_rule_drops_read_only_fields_and_refuses_duplicates() {
        for mut doc in both() {
            let id = doc.add_rule(new_rule(), NOW).unwrap();
            assert_eq!(id.len(), 32);
            let rule = &rules(&doc)[5];
            for gone in ["allowed_modes", "scope"] {
                assert!(!rule.contains_key(gone), "{gone} kept");
            }
            assert_eq!(rule["created_on"], NOW);
            assert_eq!(rule["notes"], "spam");
            let config = round_trip(&doc);
            assert_eq!(config.access_rules[4].id, id);

            let unchanged = doc.clone();
            let mut body = new_rule();
            body["id"] = json!("R1");
            assert!(matches!(
                doc.add_rule(body, NOW),
                Err(EditError::Invalid { field, value, .. }) if field == "id" && value == "R1"
            ));
            let mut body = new_rule();
            body["configuration"]["value"] = json!(66);
            assert_eq!(shape_field(doc.add_rule(body, NOW)), "configuration.value");
            let mut body = new_rule();
            body["paused"] = json!(false);
            assert_eq!(shape_field(doc.add_rule(body, NOW)), "paused");
            assert_eq!(doc, unchanged);

            let mut body = new_rule();
            body["id"] = json!("mine");
            assert_eq!(doc.add_rule(body, NOW).unwrap(), "mine");
        }
    }

    #[test]
    fn patch_rule_changes_mode_and_notes_only() {
        for mut doc in both() {
            doc.patch_rule("R1", json!({"mode": "whitelist", "notes": "ok"}), LATER)
                .unwrap();
            let rule = &rules(&doc)[0];
            assert_eq!(rule["mode"], "whitelist");
            assert_eq!(rule["notes"], "ok");
            assert_eq!(rule["created_on"], LATER, "had none");
            assert_eq!(rule["modified_on"], LATER);
            assert_eq!(rule["configuration"]["value"], "192.0.2.9");

            let office = id_of(&rules(&doc)[4]).unwrap().to_string();
            doc.patch_rule(&office, json!({"notes": null}), NOW)
                .unwrap();
            assert!(!rules(&doc)[4].contains_key("notes"));
            doc.patch_rule(&office, json!({}), LATER).unwrap();
            assert_eq!(rules(&doc)[4]["created_on"], NOW, "kept");
            assert_eq!(rules(&doc)[4]["modified_on"], LATER);
            let config = round_trip(&doc);
            assert_eq!(
                config.access_rules[0].action,
                crate::config::RuleAction::Allow
            );
            assert_eq!(config.access_rules[3].notes, None);
        }
    }

    #[test]
    fn patch_rule_refuses_other_fields_wrong_types_and_unknown_rules() {
        let [mut doc, _] = both();
        let unchanged = doc.clone();
        let body =
            json!({"mode": "block", "configuration": {"target": "ip", "value": "192.0.2.1"}});
        assert_eq!(
            shape_field(doc.patch_rule("r1", body, NOW)),
            "configuration"
        );
        assert_eq!(
            shape_field(doc.patch_rule("r1", json!({"id": "r1"}), NOW)),
            "id"
        );
        assert_eq!(
            shape_field(doc.patch_rule("r1", json!({"mode": null}), NOW)),
            "mode"
        );
        assert_eq!(
            doc.patch_rule("r1", json!({"notes": 5}), NOW),
            Err(EditError::Shape {
                field: "notes".into(),
                message: "invalid type: a number, expected a string".into()
            })
        );
        assert_eq!(shape_field(doc.patch_rule("r1", json!(null), NOW)), "");
        assert_eq!(
            doc.patch_rule("r9", json!({"mode": "block"}), NOW),
            Err(EditError::NotFound {
                kind: "access rule",
                id: "r9".into()
            })
        );
        assert_eq!(doc, unchanged);
    }

    #[test]
    fn delete_rule_removes_only_that_rule() {
        for mut doc in both() {
            let second = id_of(&rules(&doc)[1]).unwrap().to_string();
            let fourth = id_of(&rules(&doc)[3]).unwrap().to_string();
            doc.delete_rule(&second).unwrap();
            assert_eq!(rules(&doc).len(), 4);
            assert!(matches!(
                doc.delete_rule(&second),
                Err(EditError::NotFound { .. })
            ));
            // The pinned id of the other identical rule stays its own.
            let config = round_trip(&doc);
            assert!(config.access_rules.iter().any(|r| r.id == fourth));
            assert!(config.access_rules.iter().all(|r| r.id != second));
        }
    }

    #[test]
    fn an_exact_id_wins_over_one_in_another_case() {
        let mut doc = Document::parse(r#"{"edge": {}}"#, false).unwrap();
        for (id, notes) in [("Ab", "first"), ("ab", "second")] {
            let body = json!({"id": id, "mode": "block", "notes": notes,
                              "configuration": {"target": "ip", "value": "192.0.2.1"}});
            doc.rules
                .get_or_insert_with(Vec::new)
                .push(body_object(body, &[]).unwrap());
        }
        doc.patch_rule("ab", json!({"notes": "patched"}), NOW)
            .unwrap();
        assert_eq!(rules(&doc)[0]["notes"], "first");
        assert_eq!(rules(&doc)[1]["notes"], "patched");
        doc.delete_rule("AB").unwrap();
        assert_eq!(rules(&doc)[0]["notes"], "patched");
    }

    #[test]
    fn json_and_toml_render_in_their_format() {
        let [json_doc, toml_doc] = both();
        let json_text = json_doc.render().unwrap();
        assert!(json_text.starts_with("{\n  \""), "{json_text}");
        assert!(json_text.ends_with("}\n"));
        assert!(
            json_text.contains("\"origin_sni\": null"),
            "JSON keeps nulls"
        );
        let toml_text = toml_doc.render().unwrap();
        assert!(toml_text.contains("[[apps]]"), "{toml_text}");
        // The same document in the other format is the same config.
        let mut as_toml = json_doc.clone();
        as_toml.toml = true;
        let text = as_toml.render().unwrap();
        assert!(!text.contains("origin_sni"), "TOML drops nulls: {text}");
        assert_eq!(
            load_str(&text, true).unwrap(),
            load_str(&json_text, false).unwrap()
        );
        assert_eq!(round_trip(&toml_doc), round_trip(&json_doc));
    }

    #[test]
    fn parse_checks_the_outline() {
        assert!(
            Document::parse("[]", false)
                .unwrap_err()
                .contains("an array, not an object")
        );
        assert!(
            Document::parse("{", false)
                .unwrap_err()
                .starts_with("not JSON")
        );
        assert!(
            Document::parse("a = ", true)
                .unwrap_err()
                .starts_with("not TOML")
        );
        let err = Document::parse(r#"{"apps": {}}"#, false).unwrap_err();
        assert_eq!(err, "apps is an object, not an array");
        let err = Document::parse(r#"{"access_rules": [{}, 3]}"#, false).unwrap_err();
        assert_eq!(err, "access_rules[1] is a number, not an object");
        let doc = Document::parse(r#"{"edge": {}}"#, false).unwrap();
        assert_eq!(doc.value(), json!({"edge": {}}), "no lists are added");
        assert!(!doc.is_toml());
    }

    #[test]
    fn toml_datetimes_read_as_strings() {
        let text = "[[access_rules]]\nid = \"r\"\nmode = \"block\"\n\
                    created_on = 2024-05-06T07:08:09.5Z\n\
                    configuration = { target = \"ip\", value = \"192.0.2.1\" }\n";
        let doc = Document::parse(text, true).unwrap();
        assert_eq!(rules(&doc)[0]["created_on"], "2024-05-06T07:08:09.5Z");
        let back = Document::parse(&doc.render().unwrap(), true).unwrap();
        assert_eq!(back, doc);
    }

    /// A fresh directory under the system's temporary one.
    fn temp_dir(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("edit-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn write_atomic_replaces_the_file_and_keeps_its_mode() {
        let dir = temp_dir("write");
        for (name, text, perm) in [
            ("proxy.json", JSON_DOC, 0o640),
            ("proxy.TOML", TOML_DOC, 0o604),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm)).unwrap();
            let mut doc = Document::read(&path).unwrap();
            assert_eq!(doc.is_toml(), name.ends_with("TOML"));
            let config = load_str(text, doc.is_toml()).unwrap().config;
            doc.pin_ids(&config);
            let id = doc.add_app(new_app(), NOW).unwrap();
            doc.write_atomic(&path).unwrap();
            assert_eq!(mode(&path), perm);
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                doc.render().unwrap()
            );
            assert_eq!(Document::read(&path).unwrap(), doc);
            let loaded = crate::config::load(&path).unwrap().config;
            assert!(loaded.apps.iter().any(|a| a.id.to_string() == id));
        }
        assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
        // A new file is private.
        let fresh = dir.join("new.json");
        both()[0].write_atomic(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomic_writes_through_a_symlink() {
        let dir = temp_dir("link");
        let target = dir.join("real.json");
        let link = dir.join("proxy.json");
        std::fs::write(&target, JSON_DOC).unwrap();
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        let mut doc = pinned(JSON_DOC, false);
        doc.delete_app(SSH_ID).unwrap();
        doc.write_atomic(&link).unwrap();
        let is_link = std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink();
        let written = std::fs::read_to_string(&target).unwrap();
        let stray = leftovers(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(is_link, "the link stays a link");
        assert_eq!(written, doc.render().unwrap());
        assert!(stray.is_empty(), "{stray:?}");
    }

    #[test]
    fn write_atomic_never_writes_through_a_planted_temp_name() {
        let dir = temp_dir("planted");
        let target = dir.join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let path = dir.join("proxy.json");
        std::fs::write(&path, JSON_DOC).unwrap();
        // The names a predictable scheme would use (`.<name>.<pid>.<n>.tmp`,
        // `<name>.tmp`), each a symlink to a file the writer must not touch.
        let pid = std::process::id();
        let mut planted: Vec<String> = (0..512)
            .map(|n| format!(".proxy.json.{pid}.{n}.tmp"))
            .collect();
        planted.push("proxy.json.tmp".to_string());
        for name in &planted {
            std::os::unix::fs::symlink(&target, dir.join(name)).unwrap();
        }
        let mut doc = pinned(JSON_DOC, false);
        doc.delete_app(SSH_ID).unwrap();
        doc.write_atomic(&path).unwrap();
        let kept = std::fs::read_to_string(&target).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        let links = planted
            .iter()
            .filter(|name| std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_symlink()))
            .count();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(kept, "keep me", "the symlink's target is untouched");
        assert_eq!(written, doc.render().unwrap());
        assert_eq!(links, planted.len(), "every planted link is left as it was");
    }

    #[test]
    fn write_atomic_fails_cleanly_in_a_missing_directory() {
        let doc = pinned(JSON_DOC, false);
        let err = doc
            .write_atomic(Path::new("/nonexistent-dir-for-edit/proxy.json"))
            .unwrap_err();
        assert!(err.to_string().contains("cannot write config"), "{err}");
        assert!(Document::read(Path::new("/nonexistent-dir-for-edit/x.json")).is_err());
    }

    fn at(secs: i64, micros: u32) -> SystemTime {
        let offset = Duration::from_secs(secs.unsigned_abs());
        let base = if secs >= 0 {
            UNIX_EPOCH + offset
        } else {
            UNIX_EPOCH - offset
        };
        base + Duration::from_micros(u64::from(micros))
    }

    #[test]
    fn rfc3339_of_known_instants() {
        for (secs, micros, want) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 0, "2000-02-29T00:00:00.000000Z"),
            (951_868_800, 0, "2000-03-01T00:00:00.000000Z"),
            (1_000_000_000, 7, "2001-09-09T01:46:40.000007Z"),
            (1_709_251_199, 999_999, "2024-02-29T23:59:59.999999Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000000Z"),
            (1_795_681_800, 123_456, "2026-11-26T08:30:00.123456Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000000Z"),
            (-1, 0, "1969-12-31T23:59:59.000000Z"),
            (-1, 250_000, "1969-12-31T23:59:59.250000Z"),
            (-86_400 * 365, 0, "1969-01-01T00:00:00.000000Z"),
        ] {
            assert_eq!(rfc3339(at(secs, micros)), want, "{secs}.{micros:06}");
        }
    }

    #[test]
    fn now_is_rfc3339_and_moves_on() {
        let now = now_rfc3339();
        assert_eq!(now.len(), "2026-11-26T08:30:00.123456Z".len(), "{now}");
        assert!(now.ends_with('Z') && now.as_bytes()[10] == b'T', "{now}");
        assert!(now.as_str() > "2025-01-01", "{now}");
        assert!(now_rfc3339() >= now);
    }

    #[test]
    fn errors_display_field_value_and_reason() {
        let shown = EditError::Invalid {
            field: "id".into(),
            value: "x".into(),
            message: "another app has this id".into(),
        }
        .to_string();
        assert_eq!(shown, "id: \"x\": another app has this id");
        let shown = EditError::NotFound {
            kind: "app",
            id: "x".into(),
        }
        .to_string();
        assert_eq!(shown, "no app with id \"x\"");
        let shown = EditError::Shape {
            field: String::new(),
            message: "m".into(),
        }
        .to_string();
        assert_eq!(shown, "m");
    }
}
