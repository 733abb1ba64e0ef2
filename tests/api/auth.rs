//! Authentication and the cross-context isolation matrix: keys scoped to one context see only it,
//! and another context's mailboxes answer 404 (never 403) on every endpoint.

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};
use voxmail::domain::Role;

use crate::common::{TestApp, assert_problem, audio};
use crate::helpers;

/// Two tenants: `1001@alpha` and `2001@beta`, each with a PIN, a message and a greeting.
struct Tenants {
    app: TestApp,
    /// Id of the message in `2001@beta`.
    beta_msg: String,
    /// Id of the message in `1001@alpha`.
    alpha_msg: String,
}

async fn two_tenants() -> Tenants {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@alpha", json!({"fullname": "Alice", "pin": "1111"}))
        .await;
    app.create_mailbox("2001@beta", json!({"fullname": "Bert", "pin": "2222"}))
        .await;
    let alpha_msg = app
        .deposit_ok("1001@alpha", audio::wav_ulaw(1.0), "audio/wav")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let beta_msg = app
        .deposit_ok("2001@beta", audio::wav_ulaw(1.0), "audio/wav")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for address in ["1001@alpha", "2001@beta"] {
        let r = app
            .put(&format!("/v1/mailboxes/{address}/greetings/unavailable"))
            .header("content-type", "audio/wav")
            .body(audio::wav_ulaw(1.0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "greeting for {address}");
    }
    Tenants {
        app,
        beta_msg,
        alpha_msg,
    }
}

async fn key(app: &TestApp, role: Role, context: Option<&str>) -> String {
    app.services()
        .await
        .create_api_key("test key", role, context)
        .await
        .expect("create key")
        .token
}

/// Every endpoint that addresses one mailbox, as `token` would call it. `other` is a mailbox of the
/// key's own context (used as a forward target).
fn every_mailbox_endpoint(
    app: &TestApp,
    token: &str,
    address: &str,
    msg: &str,
    other: &str,
) -> Vec<(&'static str, RequestBuilder)> {
    let c = &app.client;
    let m = app.url(&format!("/v1/mailboxes/{address}"));
    let reqs = vec![
        ("GET mailbox", c.get(&m)),
        (
            "PATCH mailbox",
            c.patch(&m).json(&json!({"fullname": "Mallory"})),
        ),
        ("DELETE mailbox", c.delete(&m)),
        ("GET messages", c.get(format!("{m}/messages"))),
        (
            "POST messages (deposit)",
            c.post(format!("{m}/messages"))
                .header("content-type", "audio/wav")
                .body(audio::wav_ulaw(1.0)),
        ),
        ("GET message", c.get(format!("{m}/messages/{msg}"))),
        (
            "PATCH message",
            c.patch(format!("{m}/messages/{msg}"))
                .json(&json!({"read": true, "folder": "Old"})),
        ),
        ("DELETE message", c.delete(format!("{m}/messages/{msg}"))),
        (
            "GET message audio",
            c.get(format!("{m}/messages/{msg}/audio")),
        ),
        (
            "POST forward",
            c.post(format!("{m}/messages/{msg}/forward"))
                .json(&json!({"to": [other], "keep": false})),
        ),
        ("GET mwi", c.get(format!("{m}/mwi"))),
        (
            "PUT greeting",
            c.put(format!("{m}/greetings/busy"))
                .header("content-type", "audio/wav")
                .body(audio::wav_ulaw(1.0)),
        ),
        ("GET greeting", c.get(format!("{m}/greetings/unavailable"))),
        (
            "DELETE greeting",
            c.delete(format!("{m}/greetings/unavailable")),
        ),
        (
            "POST pin verify",
            c.post(format!("{m}/pin/verify"))
                .json(&json!({"pin": "2222"})),
        ),
    ];
    reqs.into_iter()
        .map(|(name, r)| (name, r.bearer_auth(token)))
        .collect()
}

/// Asserts, with the unscoped admin key, that nothing of `2001@beta` was changed.
async fn beta_is_untouched(t: &Tenants) {
    let app = &t.app;
    let r = app.get("/v1/mailboxes/2001@beta").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mbx: Value = r.json().await.unwrap();
    assert_eq!(mbx["fullname"], "Bert");

    let mwi = app.mwi("2001@beta").await;
    assert_eq!(mwi["new"], 1, "mwi {mwi}");
    assert_eq!(mwi["old"], 0, "mwi {mwi}");

    let list = helpers::get_json(app, "/v1/mailboxes/2001@beta/messages").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "beta messages {list}");
    assert_eq!(items[0]["id"], t.beta_msg.as_str());
    assert_eq!(items[0]["read"], false);
    assert_eq!(items[0]["folder"], "INBOX");

    let g = app
        .get("/v1/mailboxes/2001@beta/greetings/unavailable")
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), StatusCode::OK, "beta greeting still there");
    let busy = app
        .get("/v1/mailboxes/2001@beta/greetings/busy")
        .send()
        .await
        .unwrap();
    assert_problem(busy, 404, "not-found").await;

    // The alpha mailbox received no forwarded copy.
    assert_eq!(app.mwi("1001@alpha").await["new"], 1);

    // The failed PIN checks from other tenants did not count against beta.
    let r = app
        .post("/v1/mailboxes/2001@beta/pin/verify")
        .json(&json!({"pin": "2222"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn assert_every_endpoint_hides(t: &Tenants, token: &str, who: &str) {
    for (name, req) in every_mailbox_endpoint(&t.app, token, "2001@beta", &t.beta_msg, "1001@alpha")
    {
        let r = req.send().await.unwrap();
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{who}: {name} on another context's mailbox"
        );
        assert_problem(r, 404, "not-found").await;
    }
    beta_is_untouched(t).await;
}

#[tokio::test]
async fn a_request_without_authorization_is_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for path in [
        "/v1/contexts",
        "/v1/mailboxes",
        "/v1/mailboxes/1001@default",
        "/v1/mailboxes/1001@default/messages",
        "/v1/mailboxes/1001@default/mwi",
        "/v1/mailboxes/9999@nowhere",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "challenge on {path}"
        );
        assert_problem(r, 401, "unauthorized").await;
    }
    let r = app
        .client
        .post(app.url("/v1/mailboxes/1001@default/messages"))
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    assert_eq!(app.mwi("1001@default").await["new"], 0, "nothing stored");
}

#[tokio::test]
async fn garbage_and_unknown_tokens_are_401() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let url = app.url("/v1/mailboxes/1001@default");
    let unknown = format!("vxm_{}", "A".repeat(43));
    for auth in [
        "Bearer nope".to_owned(),
        format!("Bearer {unknown}"),
        "Bearer vxm_".to_owned(),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
        format!("Basic {}", app.admin),
        format!("Token {}", app.admin),
        format!("Bearer {}x", app.admin),
    ] {
        let r = app
            .client
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        let body = assert_problem(r, 401, "unauthorized").await;
        assert!(
            !body["detail"].as_str().unwrap().contains(&app.admin),
            "the token is never echoed"
        );
    }
    // The scheme is case-insensitive (RFC 9110): the same token works as "bearer".
    let r = app
        .client
        .get(&url)
        .header("authorization", format!("bearer {}", app.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_key_is_401_at_once() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let vm = app.services().await;
    let key = vm
        .create_api_key("pbx-1", Role::Pbx, Some("default"))
        .await
        .unwrap();
    let url = app.url("/v1/mailboxes/1001@default");
    let r = app
        .client
        .get(&url)
        .bearer_auth(&key.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the key works before revocation"
    );

    vm.revoke_api_key(&key.record.id.to_string()).await.unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(&key.token)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;

    // Revoking by token prefix works too, and other keys keep working.
    let other = vm.create_api_key("pbx-2", Role::Pbx, None).await.unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    vm.revoke_api_key(&other.record.token_prefix).await.unwrap();
    let r = app
        .client
        .get(&url)
        .bearer_auth(&other.token)
        .send()
        .await
        .unwrap();
    assert_problem(r, 401, "unauthorized").await;
    let r = app.get("/v1/mailboxes/1001@default").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the admin key is unaffected");
}

#[tokio::test]
async fn pbx_key_cannot_see_another_contexts_mailbox() {
    let t = two_tenants().await;
    let pbx = key(&t.app, Role::Pbx, Some("alpha")).await;
    assert_every_endpoint_hides(&t, &pbx, "pbx@alpha").await;
}

#[tokio::test]
async fn scoped_admin_key_cannot_see_another_contexts_mailbox() {
    let t = two_tenants().await;
    let admin = key(&t.app, Role::Admin, Some("alpha")).await;
    assert_every_endpoint_hides(&t, &admin, "admin@alpha").await;
}

#[tokio::test]
async fn a_scoped_key_cannot_forward_into_another_context() {
    let t = two_tenants().await;
    let pbx = key(&t.app, Role::Pbx, Some("alpha")).await;
    let r = t
        .app
        .client
        .post(t.app.url(&format!(
            "/v1/mailboxes/1001@alpha/messages/{}/forward",
            t.alpha_msg
        )))
        .bearer_auth(&pbx)
        .json(&json!({"to": ["2001@beta"], "keep": false}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    assert_eq!(t.app.mwi("2001@beta").await["new"], 1, "no copy in beta");
    assert_eq!(t.app.mwi("1001@alpha").await["new"], 1, "original kept");
}

#[tokio::test]
async fn a_scoped_pbx_key_works_on_its_own_context() {
    let t = two_tenants().await;
    let app = &t.app;
    let pbx = key(app, Role::Pbx, Some("alpha")).await;
    let m = app.url("/v1/mailboxes/1001@alpha");
    let c = &app.client;

    let r = c.get(&m).bearer_auth(&pbx).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["mailbox"], "1001");

    let r = c
        .post(format!("{m}/messages"))
        .bearer_auth(&pbx)
        .header("content-type", "audio/wav")
        .body(audio::wav_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let r = c
        .get(format!("{m}/messages"))
        .bearer_auth(&pbx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let r = c
        .get(format!("{m}/messages/{}/audio", t.alpha_msg))
        .bearer_auth(&pbx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), audio::wav_ulaw(1.0));

    let r = c
        .get(format!("{m}/greetings/unavailable"))
        .bearer_auth(&pbx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let r = c
        .get(format!("{m}/mwi"))
        .bearer_auth(&pbx)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["new"], 2);

    let r = c
        .post(format!("{m}/pin/verify"))
        .bearer_auth(&pbx)
        .json(&json!({"pin": "1111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let r = c
        .patch(format!("{m}/messages/{}", t.alpha_msg))
        .bearer_auth(&pbx)
        .json(&json!({"read": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_scoped_key_lists_only_its_own_context() {
    let t = two_tenants().await;
    let app = &t.app;
    app.create_mailbox("1002@alpha", json!({})).await;
    app.create_mailbox("2002@beta", json!({})).await;
    for role in [Role::Pbx, Role::Admin] {
        let token = key(app, role, Some("alpha")).await;
        for query in ["", "?limit=1", "?q=100", "?q=200"] {
            // Walk every page so a leak on a later page is caught too.
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = app.url(&format!("/v1/mailboxes{query}"));
                if let Some(c) = &cursor {
                    url.push(if query.is_empty() { '?' } else { '&' });
                    url.push_str(&format!("cursor={c}"));
                }
                let page: Value = app
                    .client
                    .get(url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for m in page["items"].as_array().unwrap() {
                    seen.push(m["id"].as_str().unwrap().to_owned());
                }
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            let expected: Vec<String> = match query {
                "?q=200" => vec![],
                _ => vec!["1001@alpha".into(), "1002@alpha".into()],
            };
            assert_eq!(seen, expected, "{role:?} key listing {query:?}");
        }
        let page: Value = app
            .client
            .get(app.url("/v1/mailboxes?context=beta"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["items"], json!([]), "{role:?} asking for beta");
        assert_eq!(page["next_cursor"], Value::Null);

        let contexts: Value = app
            .client
            .get(app.url("/v1/contexts"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = contexts["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alpha"], "{role:?} key's contexts");
    }
    // The unscoped admin sees both.
    let page = helpers::get_json(app, "/v1/mailboxes").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn pbx_key_is_forbidden_to_manage_contexts_and_mailboxes() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@alpha", json!({"fullname": "Alice"}))
        .await;
    for scope in [Some("alpha"), None] {
        let pbx = key(&app, Role::Pbx, scope).await;
        let c = &app.client;
        let r = c
            .post(app.url("/v1/contexts"))
            .bearer_auth(&pbx)
            .json(&json!({"name": "gamma"}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 403, "forbidden").await;
        let r = c
            .post(app.url("/v1/mailboxes"))
            .bearer_auth(&pbx)
            .json(&json!({"mailbox": "1002", "context": "alpha"}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 403, "forbidden").await;
        let r = c
            .patch(app.url("/v1/mailboxes/1001@alpha"))
            .bearer_auth(&pbx)
            .json(&json!({"fullname": "Mallory"}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 403, "forbidden").await;
        let r = c
            .delete(app.url("/v1/mailboxes/1001@alpha"))
            .bearer_auth(&pbx)
            .send()
            .await
            .unwrap();
        assert_problem(r, 403, "forbidden").await;
    }
    // Nothing changed.
    let contexts = helpers::get_json(&app, "/v1/contexts").await;
    assert_eq!(contexts["items"].as_array().unwrap().len(), 1);
    let r = app.get("/v1/mailboxes/1002@alpha").send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
    let m = helpers::get_json(&app, "/v1/mailboxes/1001@alpha").await;
    assert_eq!(m["fullname"], "Alice");
}

#[tokio::test]
async fn scoped_admin_manages_mailboxes_of_its_context_only() {
    let app = TestApp::spawn().await;
    app.create_context("alpha").await;
    app.create_context("beta").await;
    let admin = key(&app, Role::Admin, Some("alpha")).await;
    let c = &app.client;

    let r = c
        .post(app.url("/v1/contexts"))
        .bearer_auth(&admin)
        .json(&json!({"name": "gamma"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "forbidden").await;

    let r = c
        .post(app.url("/v1/mailboxes"))
        .bearer_auth(&admin)
        .json(&json!({"mailbox": "1001", "context": "alpha", "fullname": "Alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Another existing context and a missing one answer alike: 404, nothing to probe.
    for ctx in ["beta", "gamma"] {
        let r = c
            .post(app.url("/v1/mailboxes"))
            .bearer_auth(&admin)
            .json(&json!({"mailbox": "1001", "context": ctx}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 404, "not-found").await;
    }
    let r = app.get("/v1/mailboxes/1001@beta").send().await.unwrap();
    assert_problem(r, 404, "not-found").await;

    let r = c
        .patch(app.url("/v1/mailboxes/1001@alpha"))
        .bearer_auth(&admin)
        .json(&json!({"fullname": "Alice B."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["fullname"], "Alice B.");

    let r = c
        .delete(app.url("/v1/mailboxes/1001@alpha"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app.get("/v1/mailboxes/1001@alpha").send().await.unwrap();
    assert_problem(r, 404, "not-found").await;

    let contexts = helpers::get_json(&app, "/v1/contexts").await;
    assert_eq!(
        contexts["items"].as_array().unwrap().len(),
        2,
        "no context was created: {contexts}"
    );
}

#[tokio::test]
async fn another_contexts_message_id_under_an_own_mailbox_is_404() {
    let t = two_tenants().await;
    let app = &t.app;
    let pbx = key(app, Role::Pbx, Some("alpha")).await;
    let m = app.url(&format!("/v1/mailboxes/1001@alpha/messages/{}", t.beta_msg));
    let c = &app.client;
    let reqs = [
        ("GET message", c.get(&m)),
        ("PATCH message", c.patch(&m).json(&json!({"read": true}))),
        ("DELETE message", c.delete(&m)),
        ("GET audio", c.get(format!("{m}/audio"))),
        (
            "POST forward",
            c.post(format!("{m}/forward"))
                .json(&json!({"to": ["1001@alpha"], "keep": false})),
        ),
    ];
    for (name, req) in reqs {
        let r = req.bearer_auth(&pbx).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
        assert_problem(r, 404, "not-found").await;
    }
    beta_is_untouched(&t).await;
}
