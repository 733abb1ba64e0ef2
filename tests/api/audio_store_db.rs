//! `audio.store = "db"`: the audio lives in the database, where Asterisk's ODBC voicemail storage
//! (`ODBC_STORAGE`, the `voicemessages` table) looks for it: a message's bytes in its row's
//! `recording` column. These tests read the tables with plain SQL, as Asterisk would, on whichever
//! database the suite runs on (`TEST_APP_DATABASE`).

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::common::{TestApp, audio};
use crate::helpers::{audio_of, id_of};

const MBX: &str = "1001@default";

async fn db_app() -> TestApp {
    let app = TestApp::spawn_with(|c| c.audio.store = voxmail::config::AudioStore::Db).await;
    app.create_mailbox(MBX, json!({})).await;
    app
}

/// A connection to the app's database, as another program (Asterisk) would open it.
async fn connect(app: &TestApp) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(&app.config.database_url())
        .await
        .expect("connect to the app's database")
}

/// `sql` with `?` placeholders numbered for PostgreSQL.
fn portable(app: &TestApp, sql: &str) -> String {
    if !app.config.database_url().starts_with("postgres") {
        return sql.to_owned();
    }
    let mut out = String::new();
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// One column of one row, as bytes (`None`: no row, or NULL).
async fn bytes_of(app: &TestApp, sql: &str, arg: &str) -> Option<Vec<u8>> {
    let mut c = connect(app).await;
    let row: Option<(Option<Vec<u8>>,)> = sqlx::query_as(sqlx::AssertSqlSafe(portable(app, sql)))
        .bind(arg.to_owned())
        .fetch_optional(&mut c)
        .await
        .expect("query");
    row.and_then(|(b,)| b)
}

/// What Asterisk reads: `recording` of the message row.
async fn recording(app: &TestApp, id: &str) -> Option<Vec<u8>> {
    bytes_of(app, "SELECT recording FROM messages WHERE id = ?", id).await
}

/// Keys left in `audio_blobs` (renditions, uploads not adopted by a row).
async fn loose_keys(app: &TestApp) -> Vec<String> {
    let mut c = connect(app).await;
    let rows: Vec<(String,)> = sqlx::query_as("SELECT blob_key FROM audio_blobs ORDER BY blob_key")
        .fetch_all(&mut c)
        .await
        .expect("query");
    rows.into_iter().map(|(k,)| k).collect()
}

/// On the database store, the keys of the audio held under `prefix`: in `audio_blobs`, and of
/// the message and greeting rows whose `recording` holds their audio (for
/// `helpers::stored_audio`).
pub async fn stored_keys(app: &TestApp, prefix: &str) -> Vec<String> {
    let mut c = connect(app).await;
    let mut keys = Vec::new();
    for sql in [
        "SELECT blob_key FROM audio_blobs",
        "SELECT audio_key FROM messages WHERE recording IS NOT NULL",
        "SELECT audio_key FROM greetings WHERE recording IS NOT NULL",
    ] {
        let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(&mut c).await.expect(sql);
        keys.extend(
            rows.into_iter()
                .map(|(k,)| k)
                .filter(|k| k.starts_with(prefix)),
        );
    }
    keys.sort();
    keys
}

#[tokio::test]
async fn asterisk_finds_a_deposit_byte_for_byte_in_the_recording_column() {
    let app = db_app().await;
    // Longer than one read slice (256 KiB), so reads cross slice boundaries.
    let wav = audio::wav_ulaw(40.0);
    assert!(wav.len() > 300 * 1024);
    let m = app.deposit_ok(MBX, wav.clone(), "audio/wav").await;
    let id = id_of(&m);

    assert!(
        recording(&app, &id).await == Some(wav.clone()),
        "recording holds the upload"
    );
    assert_eq!(
        loose_keys(&app).await,
        Vec::<String>::new(),
        "adopted by its row"
    );
    let mut c = connect(&app).await;
    let (dir, msgnum, mailboxuser): (String, i64, String) =
        sqlx::query_as(sqlx::AssertSqlSafe(portable(
            &app,
            "SELECT dir, msgnum, mailboxuser FROM messages WHERE id = ?",
        )))
        .bind(id.clone())
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert!(dir.ends_with("/voicemail/default/1001/INBOX"), "{dir}");
    assert_eq!((msgnum, mailboxuser.as_str()), (0, "1001"));

    // The API serves it from the row, whole and in ranges (also across a slice boundary).
    assert!(audio_of(&app, MBX, &id).await == wav);
    let path = format!("/v1/mailboxes/{MBX}/messages/{id}/audio");
    for (start, end) in [
        (0u64, 0u64),
        (10, 99),
        (262_000, 262_300),
        (0, wav.len() as u64 - 1),
    ] {
        let r = app
            .get(&path)
            .header("range", format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{start}-{end}");
        let body = r.bytes().await.unwrap();
        assert!(
            body[..] == wav[start as usize..=end as usize],
            "{start}-{end}"
        );
    }
    // Nothing was written to the audio directory.
    assert!(crate::helpers::files_under(&app.data_dir().join("audio").join("messages")).is_empty());

    // Reading it and moving it to another folder keep the recording.
    let r = app
        .patch(&format!("/v1/mailboxes/{MBX}/messages/{id}"))
        .json(&json!({"folder": "Work"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(recording(&app, &id).await == Some(wav.clone()));
    assert!(audio_of(&app, MBX, &id).await == wav);
}

#[tokio::test]
async fn a_forwarded_copy_has_its_own_recording() {
    let app = db_app().await;
    app.create_mailbox("1002@default", json!({})).await;
    app.create_mailbox("2001@other", json!({})).await;
    let wav = audio::wav_alaw(3.0);
    let src = app.deposit_ok(MBX, wav.clone(), "audio/wav").await;
    let r = app
        .post(&format!(
            "/v1/mailboxes/{MBX}/messages/{}/forward",
            id_of(&src)
        ))
        .json(&json!({"to": ["1002@default"], "keep": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let copy = id_of(&body["items"][0]);
    assert!(recording(&app, &copy).await == Some(wav.clone()));
    assert!(recording(&app, &id_of(&src)).await == Some(wav.clone()));
    assert_eq!(loose_keys(&app).await, Vec::<String>::new());

    // Deleting the original leaves the copy's recording alone.
    let r = app
        .delete(&format!("/v1/mailboxes/{MBX}/messages/{}", id_of(&src)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(recording(&app, &id_of(&src)).await, None);
    assert!(recording(&app, &copy).await == Some(wav.clone()));
    assert!(audio_of(&app, "1002@default", &copy).await == wav);

    // Forwarding without keep moves it: the new row has the bytes, the old row is gone.
    let r = app
        .post(&format!(
            "/v1/mailboxes/1002@default/messages/{copy}/forward"
        ))
        .json(&json!({"to": ["2001@other"], "keep": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let moved = id_of(&body["items"][0]);
    assert_eq!(recording(&app, &copy).await, None);
    assert!(recording(&app, &moved).await == Some(wav.clone()));
    assert!(audio_of(&app, "2001@other", &moved).await == wav);
    assert_eq!(loose_keys(&app).await, Vec::<String>::new());
}

#[tokio::test]
async fn greetings_live_in_their_rows_and_a_replacement_replaces_the_bytes() {
    let app = db_app().await;
    let url = format!("/v1/mailboxes/{MBX}/greetings/busy");
    let sql = "SELECT recording FROM greetings WHERE kind = ?";
    for secs in [1.0, 2.0] {
        let wav = audio::wav_ulaw(secs);
        let r = app
            .put(&url)
            .header("content-type", "audio/wav")
            .body(wav.clone())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        assert!(bytes_of(&app, sql, "busy").await == Some(wav.clone()));
        let r = app.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.bytes().await.unwrap()[..] == wav[..]);
        assert_eq!(loose_keys(&app).await, Vec::<String>::new());
    }
    let r = app.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(bytes_of(&app, sql, "busy").await, None);
}

#[tokio::test]
async fn renditions_are_cached_in_audio_blobs_and_go_with_their_message() {
    let app = db_app().await;
    let wav = audio::wav_ulaw(2.0);
    let id = id_of(&app.deposit_ok(MBX, wav.clone(), "audio/wav").await);
    let path = format!("/v1/mailboxes/{MBX}/messages/{id}/audio.gsm");
    let first = app.get(&path).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let first = first.bytes().await.unwrap();
    let cached = loose_keys(&app).await;
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].contains(&id), "{cached:?}");
    let again = app.get(&path).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(first, again);
    let r = app
        .delete(&format!("/v1/mailboxes/{MBX}/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(loose_keys(&app).await, Vec::<String>::new());
    assert_eq!(recording(&app, &id).await, None);
}
