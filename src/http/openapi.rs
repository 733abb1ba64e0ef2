//! The served OpenAPI document: utoipa's, made exact where its derive cannot say what the
//! server does (flattened structs, the patterns of names, the answers every operation shares).

use std::sync::OnceLock;

use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use super::ApiDoc;
use super::error::PROBLEMS;
use crate::domain::{ADDRESS_PATTERN, CONTEXT_PATTERN, MAILBOX_PATTERN};

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
        normalise(&mut doc);
        doc
    })
}

fn normalise(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        field_rules(schemas);
        merge_flattened(schemas);
        name_patterns(schemas);
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                path_patterns(path, op);
                header_patterns(op);
                event_stream(op);
                shared_answers(op);
            }
        }
    }
}

/// utoipa writes a `#[serde(flatten)]` struct as `allOf` of the flattened schema and the rest;
/// the flattened one is closed (`additionalProperties: false`), so no object could satisfy
/// both. One object with every property says what the server reads and answers.
fn merge_flattened(schemas: &mut Map<String, Value>) {
    let names: Vec<String> = schemas
        .iter()
        .filter(|(_, s)| s.get("allOf").is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        let Some(parts) = schemas[&name]["allOf"].as_array().cloned() else {
            continue;
        };
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        let mut closed = false;
        for part in parts {
            let part = match part["$ref"].as_str() {
                Some(r) => match schemas.get(r.trim_start_matches("#/components/schemas/")) {
                    Some(s) => s.clone(),
                    None => continue,
                },
                None => part,
            };
            closed |= part["additionalProperties"] == json!(false);
            if let Some(p) = part["properties"].as_object() {
                properties.extend(p.clone());
            }
            for r in part["required"].as_array().into_iter().flatten() {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
        }
        let mut merged = json!({"type": "object", "properties": properties, "required": required});
        if closed {
            merged["additionalProperties"] = json!(false);
        }
        if let Some(d) = schemas[&name].get("description") {
            merged["description"] = d.clone();
        }
        schemas.insert(name, merged);
    }
}

/// Free text the service takes: no control characters (`check_len` in the directory service).
const TEXT: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The limits the directory service checks, so that a client (or a generator) can tell a valid
/// value: run before `merge_flattened`, which copies `MailboxFields` into `NewMailbox`.
fn field_rules(schemas: &mut Map<String, Value>) {
    let text = |max: usize| json!({"maxLength": max, "pattern": TEXT});
    // "" is no zone (UTC); otherwise only names compiled into chrono-tz.
    let zones: Vec<Value> = std::iter::once(json!(""))
        .chain(chrono_tz::TZ_VARIANTS.iter().map(|z| json!(z.name())))
        .chain(std::iter::once(Value::Null))
        .collect();
    let attach: Vec<Value> = crate::service::ATTACH_FORMATS
        .iter()
        .map(|f| json!(f))
        .chain(std::iter::once(Value::Null))
        .collect();
    for (schema, field, rules) in [
        ("MailboxFields", "pin", json!({"pattern": "^[0-9]{0,20}$"})),
        ("MailboxFields", "fullname", text(150)),
        ("MailboxFields", "email", text(255)),
        ("MailboxFields", "pager", text(255)),
        ("MailboxFields", "language", text(20)),
        ("MailboxFields", "tz", json!({"enum": zones})),
        ("MailboxFields", "attachfmt", json!({"enum": attach})),
        (
            "MailboxFields",
            "maxmsg",
            json!({"minimum": 1, "maximum": 9999}),
        ),
        (
            "MailboxFields",
            "maxsecs",
            json!({"minimum": 0, "maximum": 86_400}),
        ),
        (
            "MailboxFields",
            "minsecs",
            json!({"minimum": 0, "maximum": 86_400}),
        ),
        ("NewContext", "description", text(255)),
    ] {
        let Some(prop) = schemas
            .get_mut(schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        if let Value::Object(rules) = rules {
            prop.extend(rules);
        }
    }
}

/// The body fields that are checked as mailbox numbers, context names or addresses.
fn name_patterns(schemas: &mut Map<String, Value>) {
    for (schema, pointer, pattern) in [
        ("NewMailbox", "/properties/mailbox", MAILBOX_PATTERN),
        ("NewMailbox", "/properties/context", CONTEXT_PATTERN),
        ("NewContext", "/properties/name", CONTEXT_PATTERN),
        ("NewMwiTarget", "/properties/context", CONTEXT_PATTERN),
        ("NewWebhookBody", "/properties/context", CONTEXT_PATTERN),
        ("ForwardBody", "/properties/to/items", ADDRESS_PATTERN),
    ] {
        if let Some(s) = schemas
            .get_mut(schema)
            .and_then(|s| s.pointer_mut(pointer))
            .and_then(Value::as_object_mut)
        {
            s.insert("pattern".into(), json!(pattern));
        }
    }
}

fn path_patterns(path: &str, op: &mut Value) {
    for p in op
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if p["in"] != "path" {
            continue;
        }
        let pattern = match p["name"].as_str() {
            Some("address") => ADDRESS_PATTERN,
            Some("name") if path.starts_with("/v1/contexts/") => CONTEXT_PATTERN,
            _ => continue,
        };
        if let Some(s) = p.get_mut("schema").and_then(Value::as_object_mut) {
            s.insert("pattern".into(), json!(pattern));
        }
    }
}

/// `Idempotency-Key`: 1-255 visible ASCII characters, as the deposit checks it.
fn header_patterns(op: &mut Value) {
    for p in op
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if p["in"] == "header"
            && p["name"] == "Idempotency-Key"
            && let Some(s) = p.get_mut("schema").and_then(Value::as_object_mut)
        {
            s.insert("pattern".into(), json!("^[!-~]{1,255}$"));
        }
    }
}

/// A `text/event-stream` schema describes one event (its `id`, `event` and `data` fields, as
/// OpenAPI 3.2's `itemSchema` does); the JSON in `data` is the documented schema.
fn event_stream(op: &mut Value) {
    for resp in op
        .get_mut("responses")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|r| r.values_mut())
    {
        if let Some(media) = resp.pointer_mut("/content/text~1event-stream")
            && let Some(data) = media.get("schema").cloned()
        {
            media["schema"] = json!({
                "type": "object",
                "required": ["data"],
                "properties": {
                    "id": {"type": "string"},
                    "event": {"type": "string"},
                    "retry": {"type": "integer"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": data,
                    },
                },
            });
        }
    }
}

/// Answers the extractors give on any operation, whatever its handler does: a body is refused
/// before the handler runs (400 unreadable, 413 too large, 415 wrong type) or while it arrives
/// (408 too slow, from the listener), and a key is checked
/// against the database (401, and 503 when the database cannot be reached).
fn shared_answers(op: &mut Value) {
    let takes_body = op
        .pointer("/requestBody/content")
        .and_then(Value::as_object)
        .is_some_and(|c| !c.is_empty());
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    let mut add = |slug: &str| {
        let Some((_, status, title)) = PROBLEMS.iter().find(|(s, _, _)| *s == slug) else {
            return;
        };
        responses.entry(status.to_string()).or_insert_with(|| {
            json!({
                "description": title,
                "content": {"application/problem+json":
                    {"schema": {"$ref": "#/components/schemas/Problem"}}},
            })
        });
    };
    if takes_body {
        add("invalid-request");
        add("payload-too-large");
        add("unsupported-media-type");
        add("request-timeout");
    }
    if secured {
        add("unauthorized");
        add("unavailable");
    }
}
