//! The OpenAPI document, health endpoints, problem descriptions and the router's own errors.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};

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

    let mailbox: Value = app
        .get("/v1/mailboxes/1001@default")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys(&mailbox), keys(&schemas["MailboxView"]["properties"]));

    let contexts: Value = app
        .get("/v1/contexts")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
