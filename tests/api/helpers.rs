//! Small helpers shared by the API tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::TestApp;

/// The `id` of a message JSON.
pub fn id_of(m: &Value) -> String {
    m["id"].as_str().expect("message id").to_owned()
}

/// Every message of a mailbox (one page of up to 500), optionally with a query like `?folder=Old`.
pub async fn list(app: &TestApp, address: &str, query: &str) -> Vec<Value> {
    let sep = if query.is_empty() { "?" } else { "&" };
    let r = app
        .get(&format!(
            "/v1/mailboxes/{address}/messages{query}{sep}limit=500"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "list {address}{query}");
    let body: Value = r.json().await.unwrap();
    assert!(body["next_cursor"].is_null(), "one page holds everything");
    body["items"].as_array().unwrap().clone()
}

/// The JSON body of a GET of `path` with the app's key, whatever its status (the caller checks
/// the fields it expects).
pub async fn get_json(app: &TestApp, path: &str) -> Value {
    app.get(path).send().await.unwrap().json().await.unwrap()
}

/// One message's JSON.
pub async fn get_message(app: &TestApp, address: &str, id: &str) -> Value {
    let r = app
        .get(&format!("/v1/mailboxes/{address}/messages/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "get message {id}");
    r.json().await.unwrap()
}

/// The stored audio of a message, byte for byte.
pub async fn audio_of(app: &TestApp, address: &str, id: &str) -> Vec<u8> {
    let r = app
        .get(&format!("/v1/mailboxes/{address}/messages/{id}/audio"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "audio of {id}");
    r.bytes().await.unwrap().to_vec()
}

/// Every file below `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Keys of the audio the app's store holds that start with `prefix` (`""`, `"messages/"`,
/// `"greetings/"`), renditions included, sorted — whatever `audio.store` is: the files of the
/// directory store, the objects of the bucket, or on the database store the rows of
/// `audio_blobs` and the messages and greetings whose `recording` holds their audio.
pub async fn stored_audio(app: &TestApp, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = match app.config.audio.store {
        voxmail::config::AudioStore::Db => crate::audio_store_db::stored_keys(app, prefix).await,
        voxmail::config::AudioStore::S3 => {
            use futures_util::StreamExt;
            use voxmail::blob::BlobStore;
            let store = voxmail::blob::S3BlobStore::open(&app.config.audio.s3).expect("open S3");
            let mut keys = Vec::new();
            let mut listing = store.list(prefix);
            while let Some(m) = listing.next().await {
                keys.push(m.expect("list the bucket").key.as_str().to_owned());
            }
            keys
        }
        voxmail::config::AudioStore::Fs => {
            let root = app.config.audio_dir();
            files_under(&root)
                .iter()
                .filter_map(|p| p.strip_prefix(&root).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|k| k.starts_with(prefix) && !k.starts_with("tmp/"))
                .collect()
        }
    };
    keys.sort();
    keys
}

/// Stored audio (see [`stored_audio`]) whose file name mentions `needle` (a message id): its
/// original and its renditions.
pub async fn audio_named(app: &TestApp, needle: &str) -> Vec<String> {
    stored_audio(app, "")
        .await
        .into_iter()
        .filter(|k| k.rsplit('/').next().is_some_and(|n| n.contains(needle)))
        .collect()
}

/// Half-written uploads left behind: `*.part` files in the directory store's `tmp/`, or any file
/// in the scratch directory of the other stores (they spool to anonymous files).
pub fn leftover_parts(app: &TestApp) -> Vec<PathBuf> {
    if app.config.audio.store != voxmail::config::AudioStore::Fs {
        return files_under(&app.config.scratch_dir());
    }
    files_under(&app.data_dir().join("audio").join("tmp"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect()
}

/// Polls `done` every 50 ms until it holds; fails naming `what` after `within`.
pub async fn until_within(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
