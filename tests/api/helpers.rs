//! Small helpers shared by the message, greeting and restart tests.

use std::path::{Path, PathBuf};

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

/// Files of the audio store whose name mentions `needle` (a message id).
pub fn audio_files_named(app: &TestApp, needle: &str) -> Vec<PathBuf> {
    files_under(&app.data_dir().join("audio"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(needle))
        })
        .collect()
}

/// Half-written uploads left in the audio store's temp directory.
pub fn leftover_parts(app: &TestApp) -> Vec<PathBuf> {
    files_under(&app.data_dir().join("audio").join("tmp"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect()
}
