//! The OpenAPI document, health endpoints, problem descriptions and the router's own errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};
use crate::helpers;

/// The route table of the contract (issue 2, section 4), in the document's path syntax.
const CONTRACT: &[(&str, &[&str])] = &[
    ("/v1/contexts", &["post", "get"]),
    ("/v1/mailboxes", &["post", "get"]),
    ("/v1/mailboxes/{address}", &["get", "patch", "delete"]),
    ("/v1/mailboxes/{address}/messages", &["post", "get"]),
    (
        "/v1/mailboxes/{address}/messages/{id}",
        &["get", "patch", "delete"],
    ),
    ("/v1/mailboxes/{address}/messages/{id}/audio", &["get"]),
    ("/v1/mailboxes/{address}/messages/{id}/forward", &["post"]),
    ("/v1/mailboxes/{address}/mwi", &["get"]),
    (
        "/v1/mailboxes/{address}/greetings/{kind}",
        &["put", "get", "delete"],
    ),
    ("/v1/mailboxes/{address}/pin/verify", &["post"]),
    ("/healthz", &["get"]),
    ("/readyz", &["get"]),
    ("/v1/openapi.json", &["get"]),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    r.json().await.unwrap()
}

/// Every (path, method, operation) of the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(*m) {
                out.push((path.clone(), (*m).to_owned(), op.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_openapi_document_is_3_1_and_lists_every_route_of_the_contract() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "openapi {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].as_str().is_some());
    for (path, methods) in CONTRACT {
        let item = doc["paths"]
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is missing from the document"));
        for m in *methods {
            assert!(item.get(*m).is_some(), "{} {path} is not documented", m);
        }
    }
    // Path parameters are declared.
    for (path, _, op) in operations(&doc) {
        for name in ["address", "id", "kind"] {
            if path.contains(&format!("{{{name}}}")) {
                let declared = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
                assert!(declared, "{path}: path parameter {name} is declared");
            }
        }
    }
}

#[tokio::test]
async fn every_documented_error_uses_the_problem_schema_as_problem_json() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(
            problem["properties"].get(field).is_some(),
            "Problem has {field}: {problem}"
        );
    }
    let mut errors = 0;
    for (path, method, op) in operations(&doc) {
        for (status, resp) in op["responses"].as_object().unwrap() {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            // 304-style bodiless answers aside, an error carries a problem body.
            errors += 1;
            let content = resp["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path} {status} documents no body: {resp}"));
            let schema = content
                .get("application/problem+json")
                .unwrap_or_else(|| {
                    panic!("{method} {path} {status} is not application/problem+json: {resp}")
                })
                .get("schema")
                .unwrap();
            assert_eq!(
                schema["$ref"], "#/components/schemas/Problem",
                "{method} {path} {status}"
            );
            assert!(
                !content.contains_key("application/json"),
                "{method} {path} {status} also claims application/json"
            );
        }
    }
    assert!(errors > 40, "only {errors} error responses documented");
}

#[tokio::test]
async fn operations_document_the_errors_the_server_answers() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    for (path, method, op) in operations(&doc) {
        let statuses = op["responses"].as_object().unwrap();
        let secured = op
            .get("security")
            .or(doc.get("security"))
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        if path.starts_with("/v1/") && path != "/v1/openapi.json" {
            assert!(secured, "{method} {path} declares bearer security");
        }
        if secured {
            assert!(
                statuses.contains_key("401"),
                "{method} {path} documents 401"
            );
        }
        if path.contains("{address}") {
            // A malformed mailbox address is a 400; a missing mailbox a 404.
            assert!(
                statuses.contains_key("400"),
                "{method} {path} documents 400"
            );
            assert!(
                statuses.contains_key("404"),
                "{method} {path} documents 404"
            );
        }
    }
    let pin = &doc["paths"]["/v1/mailboxes/{address}/pin/verify"]["post"]["responses"];
    for s in ["204", "403", "429"] {
        assert!(pin.get(s).is_some(), "pin verify documents {s}");
    }
    let deposit = &doc["paths"]["/v1/mailboxes/{address}/messages"]["post"]["responses"];
    for s in ["201", "200", "415", "422", "507"] {
        assert!(deposit.get(s).is_some(), "deposit documents {s}");
    }
}

/// Every documented operation is a real route, and the ones declaring security refuse a request
/// without a key.
#[tokio::test]
async fn every_documented_operation_is_served_and_secured_as_documented() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let id = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = document(&app).await;
    for (path, method, op) in operations(&doc) {
        let url = path
            .replace("{address}", "1001@default")
            .replace("{id}", &id)
            .replace("{kind}", "unavailable");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.client.request(m, app.url(&url)).send().await.unwrap();
        let secured = op
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        if secured {
            assert_eq!(
                r.headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer")
            );
            assert_problem(r, 401, "unauthorized").await;
        } else {
            assert_eq!(r.status(), StatusCode::OK, "{method} {path}");
        }
    }
}

#[tokio::test]
async fn health_and_readiness_answer_200_without_a_key() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for path in [
        "/nope",
        "/v1",
        "/v1/nope",
        "/v2/mailboxes",
        "/v1/mailboxes/1001@default/nope",
        "/v1/mailboxes/1001@default/messages/x/y/z",
        "/v1/contexts/default/extra/segments",
    ] {
        let r = app.get(path).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_problem(r, 404, "not-found").await;
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for (method, path, allowed) in [
        (Method::PUT, "/v1/contexts", &["GET", "POST"][..]),
        (Method::DELETE, "/v1/mailboxes", &["GET", "POST"][..]),
        (
            Method::POST,
            "/v1/mailboxes/1001@default",
            &["GET", "PATCH", "DELETE"][..],
        ),
        (
            Method::PUT,
            "/v1/mailboxes/1001@default/messages",
            &["GET", "POST"][..],
        ),
        (Method::POST, "/v1/mailboxes/1001@default/mwi", &["GET"][..]),
        (
            Method::GET,
            "/v1/mailboxes/1001@default/pin/verify",
            &["POST"][..],
        ),
        (Method::POST, "/healthz", &["GET"][..]),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(&app.admin)
            .send()
            .await
            .unwrap();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        for m in allowed {
            assert!(
                allow.contains(m),
                "{method} {path}: Allow {allow:?} has {m}"
            );
        }
        assert_problem(r, 405, "method-not-allowed").await;
    }
}

#[tokio::test]
async fn problem_types_are_described_at_their_uri() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/problems/mailbox-full"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("mailbox-full"), "{text}");
    assert!(text.contains("507"), "{text}");
    assert!(text.to_lowercase().contains("full"), "{text}");

    // Every type the contract names resolves, with the status the API uses for it.
    for (slug, status) in [
        ("unsupported-audio", 415),
        ("mailbox-full", 507),
        ("too-short", 422),
        ("too-long", 422),
        ("not-found", 404),
        ("conflict", 409),
        ("unauthorized", 401),
        ("forbidden", 403),
        ("locked", 429),
        ("pin-mismatch", 403),
        ("invalid-request", 400),
        ("invalid-mailbox-address", 400),
        ("method-not-allowed", 405),
        ("unknown-folder", 400),
        ("corrupt-audio", 422),
    ] {
        let r = app
            .client
            .get(app.url(&format!("/problems/{slug}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "/problems/{slug}");
        let text = r.text().await.unwrap();
        assert!(text.contains(&status.to_string()), "{slug}: {text}");
    }

    let r = app
        .client
        .get(app.url("/problems/no-such-problem"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
}

/// The `type` of a problem the server really answers resolves to its description.
#[tokio::test]
async fn an_answered_problem_type_resolves() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/v1/contexts"))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 401, "unauthorized").await;
    let uri = body["type"].as_str().unwrap();
    let r = app.client.get(app.url(uri)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("401"));
}

fn keys(v: &Value) -> std::collections::BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn mailbox_schemas_use_asterisk_names_and_the_pin_is_write_only() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let view = keys(&schemas["MailboxView"]["properties"]);
    for k in [
        "mailbox",
        "context",
        "fullname",
        "email",
        "pager",
        "attach",
        "attachfmt",
        "maxmsg",
        "maxsecs",
        "minsecs",
        "tz",
        "language",
        "deletevoicemail",
        "has_pin",
    ] {
        assert!(view.contains(k), "MailboxView has {k}");
    }
    for secret in ["pin", "password"] {
        assert!(!view.contains(secret), "MailboxView never shows {secret}");
    }
    let fields = keys(&schemas["MailboxFields"]["properties"]);
    assert!(fields.contains("pin"), "the PIN can be written");
    assert!(fields.contains("fullname") && fields.contains("maxmsg"));
}

/// The JSON the server really answers has exactly the properties its schema documents.
#[tokio::test]
async fn answers_have_exactly_the_documented_properties() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"pin": "1234", "fullname": "Alice"}))
        .await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];

    let mailbox = helpers::get_json(&app, "/v1/mailboxes/1001@default").await;
    assert_eq!(keys(&mailbox), keys(&schemas["MailboxView"]["properties"]));

    let contexts = helpers::get_json(&app, "/v1/contexts").await;
    assert_eq!(
        keys(&contexts),
        ["items", "next_cursor"].map(String::from).into()
    );
    assert_eq!(
        keys(&contexts["items"][0]),
        keys(&schemas["ContextView"]["properties"])
    );

    let message = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    assert_eq!(keys(&message), keys(&schemas["MessageView"]["properties"]));

    let problem = assert_problem(
        app.get("/v1/mailboxes/9999@default").send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    assert_eq!(keys(&problem), keys(&schemas["Problem"]["properties"]));
}

/// Every `$ref` under `v`, resolved.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}")),
        None => v,
    }
}

/// An `allOf` with a closed part (`additionalProperties: false`) can only be satisfied by an
/// object without the other parts' properties: no client could send or receive one.
#[tokio::test]
async fn no_schema_combines_a_closed_object_with_other_properties() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        if let Some(parts) = schema["allOf"].as_array() {
            for part in parts {
                assert_ne!(
                    resolve(&doc, part)["additionalProperties"],
                    json!(false),
                    "{name}: allOf of a closed schema: {schema}"
                );
            }
        }
    }
    let new_mailbox = &doc["components"]["schemas"]["NewMailbox"];
    let props = keys(&new_mailbox["properties"]);
    for k in ["mailbox", "context", "pin", "fullname", "maxmsg", "tz"] {
        assert!(props.contains(k), "NewMailbox has {k}: {new_mailbox}");
    }
    assert_eq!(new_mailbox["additionalProperties"], json!(false));
    let required = new_mailbox["required"].as_array().unwrap();
    assert!(required.contains(&json!("mailbox")) && required.contains(&json!("context")));
}

/// The context settings answers carry exactly the properties of their schemas.
#[tokio::test]
async fn context_settings_answers_have_exactly_the_documented_properties() {
    let app = TestApp::spawn().await;
    app.create_context("default").await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    for (path, schema) in [
        ("/v1/contexts/default/email", "ContextEmailView"),
        ("/v1/contexts/default/asterisk", "ContextAsteriskView"),
    ] {
        let r = app.get(path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let answer: Value = r.json().await.unwrap();
        assert_eq!(
            keys(&answer),
            keys(&schemas[schema]["properties"]),
            "{path} against {schema}: {}",
            schemas[schema]
        );
    }
}

/// A message's `flag` is a value of the documented enum, urgent or not.
#[tokio::test]
async fn a_message_flag_is_one_of_the_documented_values() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let doc = document(&app).await;
    let flag = &doc["components"]["schemas"]["Flag"];
    let values = flag["enum"].as_array().unwrap();
    let plain = app
        .deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let urgent = app
        .deposit(
            "1001@default",
            audio::wav_ulaw(1.0),
            "audio/wav",
            "?urgent=true",
        )
        .await;
    assert_eq!(urgent.status(), StatusCode::CREATED);
    let urgent: Value = urgent.json().await.unwrap();
    for m in [plain, urgent] {
        assert!(
            values.contains(&m["flag"]),
            "flag {} not in {flag}",
            m["flag"]
        );
    }
}

/// Every operation lists what its extractors answer before the handler runs: 400/413/415 for a
/// request body (JSON or audio), 401 and 503 (the key is checked in the database) when secured.
#[tokio::test]
async fn every_operation_documents_the_answers_of_its_body_and_key() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let mut bodies = 0;
    for (path, method, op) in operations(&doc) {
        let statuses = op["responses"].as_object().unwrap();
        if let Some(content) = op["requestBody"]["content"].as_object() {
            bodies += 1;
            let json_or_audio = content
                .keys()
                .any(|k| k == "application/json" || k.starts_with("audio/"));
            assert!(json_or_audio, "{method} {path}: {content:?}");
            for s in ["400", "413", "415"] {
                assert!(statuses.contains_key(s), "{method} {path} documents {s}");
            }
        }
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            for s in ["401", "503"] {
                assert!(statuses.contains_key(s), "{method} {path} documents {s}");
            }
        }
    }
    assert!(bodies >= 14, "only {bodies} operations take a body");
}

/// Mailbox addresses and context names carry the pattern the server enforces, on path
/// parameters and body fields, and the pattern accepts exactly what the server accepts.
#[tokio::test]
async fn addresses_and_context_names_carry_the_patterns_the_server_enforces() {
    use voxmail::domain::{MailboxAddress, validate_context_name};
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    let mut address_pattern = None;
    for (path, method, op) in operations(&doc) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let named = |n: &str| p["in"] == "path" && p["name"] == n;
            if named("address") || (named("name") && path.starts_with("/v1/contexts/")) {
                let pattern = p["schema"]["pattern"].as_str();
                assert!(pattern.is_some(), "{method} {path}: {p}");
                if named("address") {
                    address_pattern = pattern.map(str::to_owned);
                }
            }
        }
    }
    let address = regex::Regex::new(&address_pattern.expect("an {address} parameter")).unwrap();
    let pattern = |schema: &str, pointer: &str| {
        let p = schemas[schema]
            .pointer(pointer)
            .and_then(|s| s["pattern"].as_str())
            .unwrap_or_else(|| panic!("{schema}{pointer} has no pattern: {}", schemas[schema]));
        regex::Regex::new(p).unwrap()
    };
    let mailbox = pattern("NewMailbox", "/properties/mailbox");
    let context = pattern("NewMailbox", "/properties/context");
    assert_eq!(
        context.as_str(),
        pattern("NewContext", "/properties/name").as_str()
    );
    assert_eq!(
        address.as_str(),
        pattern("ForwardBody", "/properties/to/items").as_str()
    );

    let long = |n: usize| "a".repeat(n);
    let names = [
        "1001",
        "default",
        "a",
        ".",
        "..",
        "...",
        ".a",
        "a.",
        "..a",
        "a..",
        "x.y",
        "1*2+3",
        "a-b_c",
        "",
        "a b",
        "a/b",
        "é",
        "a@b",
        "+",
        "*",
        "-",
        "_",
        &long(30),
        &long(31),
        &long(80),
        &long(81),
        &format!(".{}", long(29)),
        &format!("..{}", long(28)),
        &format!("..{}", long(29)),
    ];
    for m in names {
        let ok = MailboxAddress::new(m, "default").is_ok();
        assert_eq!(mailbox.is_match(m), ok, "mailbox {m:?}: server says {ok}");
        let ok = validate_context_name(m).is_ok();
        assert_eq!(context.is_match(m), ok, "context {m:?}: server says {ok}");
        for c in names {
            let a = format!("{m}@{c}");
            let ok = a.parse::<MailboxAddress>().is_ok();
            assert_eq!(address.is_match(&a), ok, "address {a:?}: server says {ok}");
        }
    }
}
