//! Contexts and mailboxes: create, list (paginated, searched), get, patch, delete.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};

async fn json_of(r: reqwest::Response, status: StatusCode) -> Value {
    let got = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(got, status, "body {body}");
    body
}

/// Walks `GET path` page by page (`limit` per page); returns the ids and the page sizes.
async fn walk(app: &TestApp, path: &str, limit: u32) -> (Vec<String>, Vec<usize>) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{path}{sep}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = json_of(app.get(&url).send().await.unwrap(), StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        ids.extend(items.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (ids, sizes),
        }
    }
    panic!("listing {path} never ended");
}

#[tokio::test]
async fn contexts_are_created_listed_and_never_duplicated() {
    let app = TestApp::spawn().await;
    let r = app
        .post("/v1/contexts")
        .json(&json!({"name": "default", "description": "Main office"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["location"], "/v1/contexts/default");
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["name"], "default");
    assert_eq!(c["description"], "Main office");
    assert!(c["created_at"].as_i64().unwrap() > 0);

    let r = app
        .post("/v1/contexts")
        .json(&json!({"name": "default"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "conflict").await;

    for name in ["sales", "b-2", "a.1", "z_9"] {
        app.create_context(name).await;
    }
    let all = json_of(
        app.get("/v1/contexts").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.1", "b-2", "default", "sales", "z_9"]);
    assert_eq!(all["next_cursor"], Value::Null);

    // Paginated: every context exactly once.
    let mut seen = Vec::new();
    let mut url = "/v1/contexts?limit=2".to_owned();
    loop {
        let page = json_of(app.get(&url).send().await.unwrap(), StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|c| c["name"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/v1/contexts?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, names);
}

#[tokio::test]
async fn bad_context_names_are_400() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"name": ""}),
        json!({"name": "two words"}),
        json!({"name": "a/b"}),
        json!({"name": ".."}),
        json!({"name": "x@y"}),
        json!({"name": "x".repeat(81)}),
        json!({"name": 5}),
        json!({}),
        json!({"name": "ok", "colour": "blue"}),
        json!({"name": "ok", "description": "d".repeat(256)}),
    ] {
        let r = app.post("/v1/contexts").json(&body).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_problem(r, 400, "invalid-request").await;
    }
    let all = json_of(
        app.get("/v1/contexts").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["items"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_mailbox_is_created_and_read_back_with_asterisk_field_names() {
    let app = TestApp::spawn().await;
    app.create_context("default").await;
    let r = app
        .post("/v1/mailboxes")
        .json(&json!({
            "mailbox": "1001", "context": "default", "fullname": "Alice Example",
            "email": "alice@example.com", "pager": "alice-pager@example.com", "pin": "1234",
            "attach": false, "attachfmt": "wav49", "maxmsg": 20, "maxsecs": 120, "minsecs": 2,
            "tz": "Europe/Paris", "language": "fr", "deletevoicemail": true
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/v1/mailboxes/1001@default");
    let created = json_of(r, StatusCode::CREATED).await;
    let expected = [
        ("id", json!("1001@default")),
        ("mailbox", json!("1001")),
        ("context", json!("default")),
        ("fullname", json!("Alice Example")),
        ("email", json!("alice@example.com")),
        ("pager", json!("alice-pager@example.com")),
        ("attach", json!(false)),
        ("attachfmt", json!("wav49")),
        ("maxmsg", json!(20)),
        ("maxsecs", json!(120)),
        ("minsecs", json!(2)),
        ("tz", json!("Europe/Paris")),
        ("language", json!("fr")),
        ("deletevoicemail", json!(true)),
        ("has_pin", json!(true)),
    ];
    for (k, v) in &expected {
        assert_eq!(&created[k], v, "{k} in {created}");
    }
    let obj = created.as_object().unwrap();
    for secret in ["pin", "password", "pin_hash"] {
        assert!(!obj.contains_key(secret), "{secret} is never returned");
    }
    assert!(
        !created.to_string().contains("argon2"),
        "no hash in {created}"
    );

    let got = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got, created);
}

#[tokio::test]
async fn a_new_mailbox_gets_the_asterisk_defaults() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    let m = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["fullname"], "");
    assert_eq!(m["email"], "");
    assert_eq!(m["attach"], true);
    assert_eq!(m["attachfmt"], "wav");
    assert_eq!(m["maxmsg"], Value::Null);
    assert_eq!(m["maxsecs"], Value::Null);
    assert_eq!(m["minsecs"], Value::Null);
    assert_eq!(m["deletevoicemail"], false);
    assert_eq!(m["has_pin"], false);
}

#[tokio::test]
async fn patch_changes_only_the_fields_given() {
    let app = TestApp::spawn().await;
    app.create_mailbox(
        "1001@default",
        json!({"fullname": "Alice", "email": "a@example.com", "pin": "1234", "maxsecs": 60}),
    )
    .await;
    let before = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let m = json_of(
        app.patch("/v1/mailboxes/1001@default")
            .json(&json!({"fullname": "Alice B.", "maxmsg": 10, "language": "de"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["fullname"], "Alice B.");
    assert_eq!(m["maxmsg"], 10);
    assert_eq!(m["language"], "de");
    for same in [
        "email",
        "maxsecs",
        "minsecs",
        "attach",
        "has_pin",
        "created_at",
    ] {
        assert_eq!(m[same], before[same], "{same} unchanged");
    }
    let got = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got, m, "GET sees the change");

    // A new PIN replaces the old one; "" removes it.
    let m = json_of(
        app.patch("/v1/mailboxes/1001@default")
            .json(&json!({"pin": "9876"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["has_pin"], true);
    assert!(m.get("pin").is_none());
    let r = app
        .post("/v1/mailboxes/1001@default/pin/verify")
        .json(&json!({"pin": "9876"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .post("/v1/mailboxes/1001@default/pin/verify")
        .json(&json!({"pin": "1234"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "pin-mismatch").await;
    let m = json_of(
        app.patch("/v1/mailboxes/1001@default")
            .json(&json!({"pin": ""}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["has_pin"], false);
}

#[tokio::test]
async fn patch_null_resets_maxmsg_to_the_default() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"maxmsg": 1}))
        .await;
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let r = app
        .deposit("1001@default", audio::wav_ulaw(1.0), "audio/wav", "")
        .await;
    assert_problem(r, 507, "mailbox-full").await;

    let m = json_of(
        app.patch("/v1/mailboxes/1001@default")
            .json(&json!({"maxmsg": null}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["maxmsg"], Value::Null);
    let got = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["maxmsg"], Value::Null);
    // The default (100) is in force again.
    app.deposit_ok("1001@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;

    // Leaving maxmsg out keeps it; an empty patch changes nothing.
    app.patch("/v1/mailboxes/1001@default")
        .json(&json!({"maxmsg": 7}))
        .send()
        .await
        .unwrap();
    let m = json_of(
        app.patch("/v1/mailboxes/1001@default")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["maxmsg"], 7);
}

#[tokio::test]
async fn unknown_fields_and_bad_values_are_400() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"fullname": "Alice"}))
        .await;
    let bad_creates = [
        json!({"mailbox": "1002", "context": "default", "password": "1234"}),
        json!({"mailbox": "1002", "context": "default", "secret": true}),
        json!({"mailbox": "1002", "context": "default", "maxmsg": "ten"}),
        json!({"mailbox": "1002", "context": "default", "maxmsg": 0}),
        json!({"mailbox": "1002", "context": "default", "maxmsg": -1}),
        json!({"mailbox": "1002", "context": "default", "attachfmt": "mp3"}),
        json!({"mailbox": "1002", "context": "default", "pin": "12ab"}),
        json!({"mailbox": "1002", "context": "default", "fullname": "x".repeat(151)}),
        json!({"mailbox": "1002", "context": "default", "email": "a\nb@example.com"}),
        json!({"mailbox": "1002"}),
    ];
    for body in bad_creates {
        let r = app.post("/v1/mailboxes").json(&body).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "create {body}");
        assert_problem(r, 400, "invalid-request").await;
    }
    let r = app.get("/v1/mailboxes/1002@default").send().await.unwrap();
    assert_problem(r, 404, "not-found").await;

    for body in [
        json!({"password": "1234"}),
        json!({"mailbox": "1003"}),
        json!({"context": "other"}),
        json!({"has_pin": false}),
        json!({"maxsecs": 86401}),
        json!({"attach": "yes please"}),
        json!("fullname"),
    ] {
        let r = app
            .patch("/v1/mailboxes/1001@default")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "patch {body}");
        assert_problem(r, 400, "invalid-request").await;
    }
    let m = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["fullname"], "Alice");
    assert_eq!(m["mailbox"], "1001");
    assert_eq!(m["maxsecs"], Value::Null);
}

#[tokio::test]
async fn malformed_json_is_400_and_a_missing_content_type_is_415() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"fullname": "Alice"}))
        .await;
    for (method, path) in [
        ("POST", "/v1/mailboxes"),
        ("PATCH", "/v1/mailboxes/1001@default"),
        ("POST", "/v1/contexts"),
    ] {
        for body in ["{not json", "", "{\"mailbox\": \"1002\",", "null"] {
            let req = match method {
                "POST" => app.post(path),
                _ => app.patch(path),
            };
            let r = req
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {body:?}");
            assert_problem(r, 400, "invalid-request").await;
        }
        let req = match method {
            "POST" => app.post(path),
            _ => app.patch(path),
        };
        let r = req.body("{}").send().await.unwrap();
        assert_problem(r, 415, "unsupported-media-type").await;
    }
    let m = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["fullname"], "Alice");
}

#[tokio::test]
async fn malformed_mailbox_addresses_are_400() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for addr in [
        "1001",
        "@x",
        "a%2Fb@c",
        "1001@",
        "10%2001@default",
        "1001@..",
        "1001@a%2Fb",
    ] {
        let base = format!("/v1/mailboxes/{addr}");
        for path in [
            base.clone(),
            format!("{base}/messages"),
            format!("{base}/mwi"),
            format!("{base}/greetings/unavailable"),
        ] {
            let r = app.get(&path).send().await.unwrap();
            let status = r.status();
            assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}");
            assert_problem(r, 400, "invalid-mailbox-address").await;
        }
        let r = app
            .patch(&base)
            .json(&json!({"fullname": "x"}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-mailbox-address").await;
        let r = app.delete(&base).send().await.unwrap();
        assert_problem(r, 400, "invalid-mailbox-address").await;
        let r = app
            .deposit(addr, audio::wav_ulaw(1.0), "audio/wav", "")
            .await;
        assert_problem(r, 400, "invalid-mailbox-address").await;
    }
    for (mailbox, context) in [
        ("a/b", "c"),
        ("", "default"),
        ("10 01", "default"),
        ("1001@x", "default"),
        ("..", "default"),
        ("1001", "../etc"),
        ("1".repeat(31).as_str(), "default"),
    ] {
        let r = app
            .post("/v1/mailboxes")
            .json(&json!({"mailbox": mailbox, "context": context}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{mailbox:?}@{context:?}");
        assert_problem(r, 400, "invalid-mailbox-address").await;
    }
    let page = json_of(
        app.get("/v1/mailboxes").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_duplicate_mailbox_is_409_and_a_missing_context_is_404() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"fullname": "Alice"}))
        .await;
    let r = app
        .post("/v1/mailboxes")
        .json(&json!({"mailbox": "1001", "context": "default", "fullname": "Mallory"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 409, "conflict").await;
    let m = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["fullname"], "Alice", "the first mailbox is kept");

    let r = app
        .post("/v1/mailboxes")
        .json(&json!({"mailbox": "1001", "context": "nowhere"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;

    // The same number in another context is another mailbox.
    app.create_context("other").await;
    let r = app
        .post("/v1/mailboxes")
        .json(&json!({"mailbox": "1001", "context": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    for path in [
        "/v1/mailboxes/1002@default",
        "/v1/mailboxes/1001@nowhere",
        "/v1/mailboxes/1002@default/messages",
        "/v1/mailboxes/1002@default/mwi",
    ] {
        let r = app.get(path).send().await.unwrap();
        assert_problem(r, 404, "not-found").await;
    }
    let r = app
        .patch("/v1/mailboxes/1002@default")
        .json(&json!({"fullname": "x"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    let r = app
        .delete("/v1/mailboxes/1002@default")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
}

#[tokio::test]
async fn listing_walks_every_mailbox_exactly_once_with_a_cursor() {
    let app = TestApp::spawn().await;
    let mut expected = Vec::new();
    for n in [1007, 1001, 1005, 1003, 1002, 1006, 1004] {
        app.create_mailbox(&format!("{n}@default"), json!({})).await;
    }
    for n in 1001..=1007 {
        expected.push(format!("{n}@default"));
    }
    for a in ["1001@zeta", "1001@alpha"] {
        app.create_mailbox(a, json!({})).await;
    }

    let (ids, sizes) = walk(&app, "/v1/mailboxes?context=default", 3).await;
    assert_eq!(ids, expected, "in order, each once");
    assert_eq!(sizes, [3, 3, 1]);

    let (ids, _) = walk(&app, "/v1/mailboxes", 3).await;
    let mut all = vec!["1001@alpha".to_owned()];
    all.extend(expected.iter().cloned());
    all.push("1001@zeta".to_owned());
    assert_eq!(ids, all, "across contexts, sorted by context then mailbox");

    // A page size that divides the count ends with an empty last page or a null cursor, never a repeat.
    let (ids, _) = walk(&app, "/v1/mailboxes", 9).await;
    assert_eq!(ids.len(), 9);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 9);
    let (ids, sizes) = walk(&app, "/v1/mailboxes", 500).await;
    assert_eq!(ids, all);
    assert_eq!(sizes, [9]);

    // Above the maximum, the maximum is used.
    let page = json_of(
        app.get("/v1/mailboxes?limit=100000").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 9);
}

#[tokio::test]
async fn q_searches_mailbox_prefix_full_name_and_email() {
    let app = TestApp::spawn().await;
    app.create_mailbox(
        "1001@default",
        json!({"fullname": "Alice Smith", "email": "alice@example.com"}),
    )
    .await;
    app.create_mailbox(
        "2001@default",
        json!({"fullname": "Bob Jones", "email": "bob@corp.test"}),
    )
    .await;
    app.create_mailbox(
        "3001@default",
        json!({"fullname": "Carol", "email": "carol@example.com"}),
    )
    .await;
    for (q, want) in [
        ("Smith", vec!["1001@default"]),
        ("Jones", vec!["2001@default"]),
        ("example.com", vec!["1001@default", "3001@default"]),
        ("20", vec!["2001@default"]),
        ("3", vec!["3001@default"]),
        ("001", vec![]),
        ("%", vec![]),
        ("_", vec![]),
        ("nobody", vec![]),
        ("", vec!["1001@default", "2001@default", "3001@default"]),
    ] {
        let page = json_of(
            app.get(&format!("/v1/mailboxes?q={}", urlencode(q)))
                .send()
                .await
                .unwrap(),
            StatusCode::OK,
        )
        .await;
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, want, "q={q:?}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_bad_limit_or_cursor_is_400() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({})).await;
    for path in [
        "/v1/mailboxes?limit=0",
        "/v1/mailboxes?limit=abc",
        "/v1/mailboxes?limit=-1",
        "/v1/mailboxes?limit=1.5",
        "/v1/mailboxes?cursor=not-a-cursor!",
        "/v1/contexts?limit=0",
        "/v1/contexts?limit=abc",
        "/v1/mailboxes/1001@default/messages?limit=0",
        "/v1/mailboxes/1001@default/messages?limit=abc",
    ] {
        let r = app.get(path).send().await.unwrap();
        let status = r.status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_problem(r, 400, "invalid-request").await;
    }
}

#[tokio::test]
async fn deleting_a_mailbox_removes_its_messages_greetings_and_audio_files() {
    let app = TestApp::spawn().await;
    app.create_mailbox("1001@default", json!({"pin": "1234"}))
        .await;
    app.create_mailbox("1002@default", json!({})).await;
    let gone_a = audio::wav_ulaw(1.0);
    let gone_b = audio::wav_alaw(2.0);
    let kept = audio::wav_pcm16(1.5, 8000);
    app.deposit_ok("1001@default", gone_a.clone(), "audio/wav")
        .await;
    app.deposit_ok("1001@default", gone_b.clone(), "audio/wav")
        .await;
    let kept_id = crate::helpers::id_of(
        &app.deposit_ok("1002@default", kept.clone(), "audio/wav")
            .await,
    );
    let r = app
        .put("/v1/mailboxes/1001@default/greetings/unavailable")
        .header("content-type", "audio/PCMU")
        .body(audio::raw_ulaw(1.0))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let stored = crate::helpers::stored_audio;
    assert_eq!(
        stored(&app, "messages/").await.len(),
        3,
        "three message files"
    );
    assert_eq!(
        stored(&app, "greetings/").await.len(),
        1,
        "one greeting file"
    );

    let r = app
        .delete("/v1/mailboxes/1001@default")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let left = stored(&app, "messages/").await;
    assert_eq!(left.len(), 1, "only 1002's audio is left: {left:?}");
    assert!(left[0].contains(&kept_id), "{left:?}");
    assert!(crate::helpers::audio_of(&app, "1002@default", &kept_id).await == kept);
    assert!(
        stored(&app, "greetings/").await.is_empty(),
        "the greeting's audio is gone"
    );

    for path in [
        "/v1/mailboxes/1001@default",
        "/v1/mailboxes/1001@default/messages",
        "/v1/mailboxes/1001@default/mwi",
        "/v1/mailboxes/1001@default/greetings/unavailable",
    ] {
        let r = app.get(path).send().await.unwrap();
        assert_problem(r, 404, "not-found").await;
    }
    let r = app
        .delete("/v1/mailboxes/1001@default")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    assert_eq!(app.mwi("1002@default").await["new"], 1, "1002 untouched");

    // A mailbox created again at the same address starts empty.
    app.create_mailbox("1001@default", json!({})).await;
    let m = json_of(
        app.get("/v1/mailboxes/1001@default").send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(m["has_pin"], false);
    assert_eq!(app.mwi("1001@default").await["new"], 0);
    let list = json_of(
        app.get("/v1/mailboxes/1001@default/messages")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["items"], json!([]));
    let r = app
        .get("/v1/mailboxes/1001@default/greetings/unavailable")
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
}

/// `tz` takes IANA zone names only: a path (which a reader resolving zones from files would
/// follow) or an unknown name is a 400, on create and on change, and nothing is stored.
#[tokio::test]
async fn a_time_zone_must_be_an_iana_name() {
    let app = TestApp::spawn().await;
    app.create_context("default").await;
    for tz in [
        "../../etc/localtime",
        "/etc/localtime",
        "Europe/../../etc/passwd",
        "europe",
        "Mars/Olympus",
    ] {
        let r = app
            .post("/v1/mailboxes")
            .json(&json!({"mailbox": "1001", "context": "default", "tz": tz}))
            .send()
            .await
            .unwrap();
        let p = assert_problem(r, 400, "invalid-request").await;
        assert!(p["detail"].as_str().unwrap().contains("tz"), "{p}");
    }
    let r = app.get("/v1/mailboxes/1001@default").send().await.unwrap();
    assert_problem(r, 404, "not-found").await;

    app.create_mailbox("1001@default", json!({"tz": "America/New_York"}))
        .await;
    for tz in ["../../etc/localtime", "Europe/Nowhere"] {
        let r = app
            .patch("/v1/mailboxes/1001@default")
            .json(&json!({"tz": tz}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "invalid-request").await;
    }
    for tz in ["UTC", "Europe/Paris", ""] {
        let r = app
            .patch("/v1/mailboxes/1001@default")
            .json(&json!({"tz": tz}))
            .send()
            .await
            .unwrap();
        let m = json_of(r, StatusCode::OK).await;
        assert_eq!(m["tz"], tz);
    }
}
