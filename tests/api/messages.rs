//! Listing, reading, moving, deleting and forwarding messages; serving their audio.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_problem, audio};
use crate::helpers::{self, audio_of, get_message, id_of, list};

const MBX: &str = "1001@default";

async fn app_with_mailbox(extra: Value) -> TestApp {
    let app = TestApp::spawn().await;
    app.create_mailbox(MBX, extra).await;
    app
}

async fn patch(app: &TestApp, id: &str, body: Value) -> Value {
    let r = app
        .patch(&format!("/v1/mailboxes/{MBX}/messages/{id}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let m: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "PATCH {body}: {m}");
    m
}

fn msgnums(items: &[Value]) -> Vec<i64> {
    items
        .iter()
        .map(|m| m["msgnum"].as_i64().unwrap())
        .collect()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(id_of).collect()
}

fn counts(mwi: &Value) -> (u64, u64, u64, u64) {
    let n = |k: &str| mwi[k].as_u64().unwrap();
    (n("new"), n("old"), n("urgent_new"), n("urgent_old"))
}

#[tokio::test]
async fn listing_shows_every_message_and_filters_by_folder() {
    let app = app_with_mailbox(json!({})).await;
    let a = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let b = app
        .deposit_ok(MBX, audio::raw_alaw(1.0), "audio/PCMA")
        .await;
    let r = app
        .deposit(MBX, audio::wav_ulaw(1.0), "audio/wav", "?urgent=yes")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let c: Value = r.json().await.unwrap();

    let all = list(&app, MBX, "").await;
    assert_eq!(ids(&all), vec![id_of(&a), id_of(&b), id_of(&c)]);
    let inbox = list(&app, MBX, "?folder=INBOX").await;
    assert_eq!(ids(&inbox), vec![id_of(&a), id_of(&b)]);
    assert_eq!(msgnums(&inbox), vec![0, 1]);
    assert_eq!(ids(&list(&app, MBX, "?folder=inbox").await), ids(&inbox));
    assert_eq!(
        ids(&list(&app, MBX, "?folder=Urgent").await),
        vec![id_of(&c)]
    );
    assert!(list(&app, MBX, "?folder=Work").await.is_empty());
    assert!(list(&app, MBX, "?folder=Cust1").await.is_empty());

    for m in &all {
        assert_eq!(&get_message(&app, MBX, &id_of(m)).await, m);
    }
}

#[tokio::test]
async fn reading_moves_a_new_message_to_old_and_unreading_brings_it_back() {
    let app = app_with_mailbox(json!({})).await;
    let m = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let id = id_of(&m);
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 0, 0));

    let read = patch(&app, &id, json!({"read": true})).await;
    assert_eq!(read["folder"], "Old");
    assert_eq!(read["read"], true);
    assert_eq!(read["msgnum"], 0);
    assert_eq!(read["id"], m["id"], "moving keeps the message id");
    assert_eq!(counts(&app.mwi(MBX).await), (0, 1, 0, 0));
    assert!(list(&app, MBX, "?folder=INBOX").await.is_empty());
    assert_eq!(ids(&list(&app, MBX, "?folder=Old").await), vec![id.clone()]);

    let unread = patch(&app, &id, json!({"read": false})).await;
    assert_eq!(unread["folder"], "INBOX");
    assert_eq!(unread["read"], false);
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 0, 0));
    assert_eq!(get_message(&app, MBX, &id).await, unread);
}

#[tokio::test]
async fn an_urgent_message_read_and_unread_returns_to_urgent() {
    let app = app_with_mailbox(json!({})).await;
    let r = app
        .deposit(MBX, audio::wav_ulaw(1.0), "audio/wav", "?urgent=true")
        .await;
    let id = id_of(&r.json::<Value>().await.unwrap());
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 1, 0));
    let read = patch(&app, &id, json!({"read": true})).await;
    assert_eq!(read["folder"], "Old");
    assert_eq!(read["flag"], "Urgent");
    assert_eq!(counts(&app.mwi(MBX).await), (0, 1, 0, 1));
    let unread = patch(&app, &id, json!({"read": false})).await;
    assert_eq!(unread["folder"], "Urgent");
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 1, 0));
}

#[tokio::test]
async fn moving_a_message_compacts_the_msgnums_of_its_old_folder() {
    let app = app_with_mailbox(json!({})).await;
    let mut deposited = Vec::new();
    for _ in 0..3 {
        deposited.push(app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await);
    }
    assert_eq!(msgnums(&deposited), vec![0, 1, 2]);

    let moved = patch(&app, &id_of(&deposited[1]), json!({"folder": "Work"})).await;
    assert_eq!(moved["folder"], "Work");
    assert_eq!(moved["msgnum"], 0);
    assert_eq!(moved["read"], false);

    let inbox = list(&app, MBX, "?folder=INBOX").await;
    assert_eq!(
        ids(&inbox),
        vec![id_of(&deposited[0]), id_of(&deposited[2])]
    );
    assert_eq!(msgnums(&inbox), vec![0, 1], "Asterisk closes the gap");
    let work = list(&app, MBX, "?folder=Work").await;
    assert_eq!(ids(&work), vec![id_of(&deposited[1])]);
    assert_eq!(msgnums(&work), vec![0]);

    // The next message into each folder goes to its end.
    let next = patch(&app, &id_of(&deposited[0]), json!({"folder": "work"})).await;
    assert_eq!(next["folder"], "Work");
    assert_eq!(next["msgnum"], 1);
    assert_eq!(msgnums(&list(&app, MBX, "?folder=INBOX").await), vec![0]);
    let newest = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    assert_eq!(newest["msgnum"], 1);

    // A custom folder works like the standard ones.
    let custom = patch(&app, &id_of(&newest), json!({"folder": "Cust1"})).await;
    assert_eq!(custom["folder"], "Cust1");
    assert_eq!(custom["msgnum"], 0);
    assert_eq!(msgnums(&list(&app, MBX, "?folder=INBOX").await), vec![0]);
}

#[tokio::test]
async fn moving_into_a_full_folder_is_507_and_changes_nothing() {
    let app = app_with_mailbox(json!({"maxmsg": 1})).await;
    let a = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    patch(&app, &id_of(&a), json!({"folder": "Work"})).await;
    let b = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let r = app
        .patch(&format!("/v1/mailboxes/{MBX}/messages/{}", id_of(&b)))
        .json(&json!({"folder": "Work"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 507, "mailbox-full").await;
    assert_eq!(get_message(&app, MBX, &id_of(&b)).await, b);
}

#[tokio::test]
async fn deleting_a_message_removes_it_and_its_audio_file() {
    let app = app_with_mailbox(json!({})).await;
    let a = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let b = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let id = id_of(&a);
    let files = helpers::audio_named(&app, &id).await;
    assert_eq!(files.len(), 1, "one audio file per message: {files:?}");

    let url = format!("/v1/mailboxes/{MBX}/messages/{id}");
    let r = app.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get(&url).send().await.unwrap(), 404, "not-found").await;
    assert_problem(
        app.get(&format!("{url}/audio")).send().await.unwrap(),
        404,
        "not-found",
    )
    .await;
    assert_problem(app.delete(&url).send().await.unwrap(), 404, "not-found").await;
    assert!(
        helpers::audio_named(&app, &id).await.is_empty(),
        "the audio is gone"
    );

    let left = list(&app, MBX, "").await;
    assert_eq!(ids(&left), vec![id_of(&b)]);
    assert_eq!(msgnums(&left), vec![0], "the survivor moves up");
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 0, 0));
    assert_eq!(audio_of(&app, MBX, &id_of(&b)).await, audio::wav_ulaw(1.0));
}

#[tokio::test]
async fn forwarding_with_keep_copies_the_message_into_every_target() {
    let app = app_with_mailbox(json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    app.create_mailbox("2001@other", json!({})).await;
    let wav = audio::wav_alaw(1.5);
    let r = app
        .deposit(
            MBX,
            wav.clone(),
            "audio/wav",
            "?caller_id_num=5550000&category=sales",
        )
        .await;
    let src: Value = r.json().await.unwrap();
    let r = app
        .post(&format!(
            "/v1/mailboxes/{MBX}/messages/{}/forward",
            id_of(&src)
        ))
        .json(&json!({"to": ["1002@default", "2001@other"], "keep": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let copies = body["items"].as_array().unwrap();
    assert_eq!(copies.len(), 2);
    let mut targets: Vec<&str> = copies
        .iter()
        .map(|c| c["mailbox"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, vec!["1002@default", "2001@other"]);
    for c in copies {
        let target = c["mailbox"].as_str().unwrap();
        assert_ne!(c["id"], src["id"]);
        assert_eq!(c["forwarded_from"], src["id"]);
        assert_eq!(c["origmailbox"], MBX);
        assert_eq!(c["folder"], "INBOX");
        assert_eq!(c["msgnum"], 0);
        assert_eq!(c["caller_id_num"], "5550000");
        assert_eq!(c["category"], "sales");
        assert_eq!(c["duration_ms"], 1500);
        assert_eq!(c["audio"]["sha256"], src["audio"]["sha256"]);
        assert_eq!(audio_of(&app, target, &id_of(c)).await, wav);
        assert_eq!(&get_message(&app, target, &id_of(c)).await, c);
        assert_eq!(counts(&app.mwi(target).await), (1, 0, 0, 0));
    }
    assert_eq!(get_message(&app, MBX, &id_of(&src)).await, src);
    assert_eq!(audio_of(&app, MBX, &id_of(&src)).await, wav);
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 0, 0));

    // Deleting the original leaves the copies' audio alone.
    let r = app
        .delete(&format!("/v1/mailboxes/{MBX}/messages/{}", id_of(&src)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for c in copies {
        assert_eq!(
            audio_of(&app, c["mailbox"].as_str().unwrap(), &id_of(c)).await,
            wav
        );
    }
}

#[tokio::test]
async fn forwarding_without_keep_moves_the_message() {
    let app = app_with_mailbox(json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    app.create_mailbox("1003@default", json!({})).await;
    let wav = audio::wav_ulaw(1.0);
    let src = app.deposit_ok(MBX, wav.clone(), "audio/wav").await;
    let other = app.deposit_ok(MBX, audio::wav_ulaw(2.0), "audio/wav").await;
    let r = app
        .post(&format!(
            "/v1/mailboxes/{MBX}/messages/{}/forward",
            id_of(&src)
        ))
        .json(&json!({"to": ["1002@default", "1003@default"], "keep": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let copies: Value = r.json().await.unwrap();
    for c in copies["items"].as_array().unwrap() {
        let target = c["mailbox"].as_str().unwrap();
        assert_eq!(c["forwarded_from"], src["id"]);
        assert_eq!(audio_of(&app, target, &id_of(c)).await, wav);
        assert_eq!(counts(&app.mwi(target).await), (1, 0, 0, 0));
    }
    let r = app
        .get(&format!("/v1/mailboxes/{MBX}/messages/{}", id_of(&src)))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
    assert!(helpers::audio_named(&app, &id_of(&src)).await.is_empty());
    let left = list(&app, MBX, "").await;
    assert_eq!(ids(&left), vec![id_of(&other)]);
    assert_eq!(msgnums(&left), vec![0]);
    assert_eq!(counts(&app.mwi(MBX).await), (1, 0, 0, 0));
}

#[tokio::test]
async fn forwarding_to_a_full_mailbox_creates_nothing_anywhere() {
    let app = app_with_mailbox(json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    app.create_mailbox("1003@default", json!({"maxmsg": 1}))
        .await;
    app.create_mailbox("1004@default", json!({})).await;
    let src = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let full = app
        .deposit_ok("1003@default", audio::wav_ulaw(1.0), "audio/wav")
        .await;
    let files_before = helpers::stored_audio(&app, "").await;
    let mwi_before = app.mwi("1002@default").await;

    for to in [
        json!(["1002@default", "1003@default", "1004@default"]),
        json!(["1003@default", "1002@default"]),
    ] {
        for keep in [true, false] {
            let r = app
                .post(&format!(
                    "/v1/mailboxes/{MBX}/messages/{}/forward",
                    id_of(&src)
                ))
                .json(&json!({"to": to, "keep": keep}))
                .send()
                .await
                .unwrap();
            assert_problem(r, 507, "mailbox-full").await;
        }
    }
    assert!(list(&app, "1002@default", "").await.is_empty());
    assert!(list(&app, "1004@default", "").await.is_empty());
    assert_eq!(
        ids(&list(&app, "1003@default", "").await),
        vec![id_of(&full)]
    );
    assert_eq!(get_message(&app, MBX, &id_of(&src)).await, src);
    assert_eq!(app.mwi("1002@default").await, mwi_before);
    assert_eq!(
        helpers::stored_audio(&app, "").await,
        files_before,
        "no audio copy is left behind"
    );
}

#[tokio::test]
async fn forwarding_to_an_unknown_mailbox_is_404_and_creates_nothing() {
    let app = app_with_mailbox(json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    let src = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    let files_before = helpers::stored_audio(&app, "").await;
    for to in [
        json!(["9999@default"]),
        json!(["1002@default", "1002@nowhere"]),
    ] {
        let r = app
            .post(&format!(
                "/v1/mailboxes/{MBX}/messages/{}/forward",
                id_of(&src)
            ))
            .json(&json!({"to": to, "keep": false}))
            .send()
            .await
            .unwrap();
        assert_problem(r, 404, "not-found").await;
    }
    assert!(list(&app, "1002@default", "").await.is_empty());
    assert_eq!(get_message(&app, MBX, &id_of(&src)).await, src);
    assert_eq!(helpers::stored_audio(&app, "").await, files_before);
}

#[tokio::test]
async fn audio_serves_byte_ranges() {
    let app = app_with_mailbox(json!({})).await;
    let wav = audio::wav_ulaw(1.0);
    let size = wav.len();
    let m = app.deposit_ok(MBX, wav.clone(), "audio/wav").await;
    let url = format!("/v1/mailboxes/{MBX}/messages/{}/audio", id_of(&m));

    let full = app.get(&url).send().await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.headers()["content-length"], size.to_string().as_str());

    for (range, from, to) in [
        ("bytes=0-99", 0, 99),
        ("bytes=-10", size - 10, size - 1),
        ("bytes=100-", 100, size - 1),
        ("bytes=44-44", 44, 44),
        (&format!("bytes=8000-{}", size + 500), 8000, size - 1),
    ] {
        let r = app.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {from}-{to}/{size}").as_str(),
            "{range}"
        );
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            wav[from..=to].to_vec(),
            "{range}"
        );
    }

    // Several ranges, or one the server cannot parse, get the whole recording (RFC 9110 allows it).
    for range in ["bytes=0-1,5-6", "bytes=abc", "pages=1-2"] {
        let r = app.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{range}");
        assert_eq!(r.bytes().await.unwrap().to_vec(), wav, "{range}");
    }

    for range in ["bytes=999999-", &format!("bytes={size}-")] {
        let r = app.get(&url).header("range", range).send().await.unwrap();
        let content_range = r.headers().get("content-range").cloned();
        assert_problem(r, 416, "range-not-satisfiable").await;
        assert_eq!(
            content_range.unwrap().to_str().unwrap(),
            format!("bytes */{size}"),
            "{range}"
        );
    }
}

#[tokio::test]
async fn audio_answers_304_when_the_etag_matches() {
    let app = app_with_mailbox(json!({})).await;
    let wav = audio::raw_ulaw(1.0);
    let m = app.deposit_ok(MBX, wav.clone(), "audio/PCMU").await;
    let url = format!("/v1/mailboxes/{MBX}/messages/{}/audio", id_of(&m));
    let r = app.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", audio::sha256_hex(&wav)));

    let r = app
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());

    let r = app
        .get(&url)
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), wav);
}

#[tokio::test]
async fn cursor_pagination_returns_every_message_once_in_deposit_order() {
    let app = app_with_mailbox(json!({})).await;
    let mut deposited = Vec::new();
    for _ in 0..7 {
        deposited.push(id_of(
            &app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await,
        ));
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=3&cursor={c}"),
            None => "?limit=3".to_owned(),
        };
        let r = app
            .get(&format!("/v1/mailboxes/{MBX}/messages{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(ids(items));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination must end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, deposited);

    // Exactly one full page has no next page.
    let r = app
        .get(&format!("/v1/mailboxes/{MBX}/messages?limit=7"))
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert!(page["next_cursor"].is_null());

    // Pagination within a folder.
    let r = app
        .get(&format!(
            "/v1/mailboxes/{MBX}/messages?folder=INBOX&limit=5"
        ))
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let r = app
        .get(&format!(
            "/v1/mailboxes/{MBX}/messages?folder=INBOX&limit=5&cursor={cursor}"
        ))
        .send()
        .await
        .unwrap();
    let rest: Value = r.json().await.unwrap();
    assert_eq!(
        ids(rest["items"].as_array().unwrap()),
        deposited[5..].to_vec()
    );
}

#[tokio::test]
async fn the_mwi_version_only_grows() {
    let app = app_with_mailbox(json!({})).await;
    app.create_mailbox("1002@default", json!({})).await;
    let mut last = app.mwi(MBX).await["version"].as_i64().unwrap();
    let mut step = |mwi: Value, what: &str| {
        let v = mwi["version"].as_i64().unwrap();
        assert!(v > last, "{what}: version {v} after {last}");
        last = v;
    };
    let a = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    step(app.mwi(MBX).await, "deposit");
    let b = app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    step(app.mwi(MBX).await, "second deposit");
    patch(&app, &id_of(&a), json!({"read": true})).await;
    step(app.mwi(MBX).await, "read");
    patch(&app, &id_of(&a), json!({"folder": "Family"})).await;
    step(app.mwi(MBX).await, "move");
    let r = app
        .post(&format!(
            "/v1/mailboxes/{MBX}/messages/{}/forward",
            id_of(&b)
        ))
        .json(&json!({"to": ["1002@default"], "keep": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    step(app.mwi(MBX).await, "forward away");
    let r = app
        .delete(&format!("/v1/mailboxes/{MBX}/messages/{}", id_of(&a)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    step(app.mwi(MBX).await, "delete");
    assert_eq!(counts(&app.mwi(MBX).await), (0, 0, 0, 0));
    // Reading does not change it.
    let before = app.mwi(MBX).await;
    list(&app, MBX, "").await;
    assert_eq!(app.mwi(MBX).await, before);
}
