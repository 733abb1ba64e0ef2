//! A node rides out its back ends failing: a full disk under SQLite and the audio directory, a
//! database that goes away. It answers 503 `unavailable` (with Retry-After) quickly while they
//! fail, /readyz says so, and once they are back every request succeeds again without a restart
//! and nothing acknowledged before was lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::db::{Backend, TestDb};
use crate::common::disk::SmallDisk;
use crate::common::proxy::{Outage, TcpProxy, upstream_of};
use crate::common::{TestApp, assert_problem, audio};
use crate::helpers::{self, id_of};

const MBX: &str = "1001@default";

/// Every message of the mailbox by id, with the SHA-256 of its audio.
async fn contents(app: &TestApp) -> BTreeMap<String, (Value, String)> {
    let mut out = BTreeMap::new();
    for m in helpers::list(app, MBX, "").await {
        let id = id_of(&m);
        let sha = audio::sha256_hex(&helpers::audio_of(app, MBX, &id).await);
        out.insert(id, (m, sha));
    }
    out
}

async fn readyz(app: &TestApp) -> reqwest::Response {
    app.client.get(app.url("/readyz")).send().await.unwrap()
}

async fn move_to(app: &TestApp, id: &str, folder: &str) -> reqwest::Response {
    app.patch(&format!("/v1/mailboxes/{MBX}/messages/{id}"))
        .json(&json!({"folder": folder}))
        .send()
        .await
        .unwrap()
}

async fn delete(app: &TestApp, id: &str) -> reqwest::Response {
    app.delete(&format!("/v1/mailboxes/{MBX}/messages/{id}"))
        .send()
        .await
        .unwrap()
}

/// A 503 `unavailable` problem with a Retry-After.
async fn assert_unavailable(r: reqwest::Response, what: &str) -> Value {
    assert!(
        r.headers().contains_key("retry-after"),
        "{what}: 503 without Retry-After"
    );
    assert_problem(r, 503, "unavailable").await
}

#[tokio::test]
async fn after_a_full_disk_every_write_succeeds_again_and_nothing_acknowledged_is_lost() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let db = disk.path().join("voxmail.db");
    let audio_dir = disk.path().join("audio");
    let app = TestApp::spawn_with_db(None, |c| {
        c.database.url = format!("sqlite://{}?mode=rwc", db.display());
        c.audio.store = voxmail::config::AudioStore::Fs;
        c.audio.dir = audio_dir.clone();
    })
    .await;
    app.create_mailbox(MBX, json!({"maxmsg": 200})).await;
    for _ in 0..6 {
        app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    }
    let before = contents(&app).await;
    let ids: Vec<String> = before.keys().cloned().collect();
    // Untouched while the disk is full: they must come out unchanged.
    let keep = &ids[..2];
    let (to_move, to_delete) = (&ids[2..4], &ids[4..6]);
    assert_eq!(readyz(&app).await.status(), StatusCode::OK);

    disk.fill();
    for _ in 0..5 {
        let r = app
            .deposit(MBX, audio::wav_ulaw(1.0), "audio/wav", "")
            .await;
        let body = assert_unavailable(r, "deposit on a full disk").await;
        assert!(
            body["detail"].as_str().unwrap().contains("full"),
            "the detail names the cause: {body}"
        );
    }
    // Writes that need no audio may still fit in SQLite's log; whatever the answer, it must be
    // a 2xx or a 503, and it counts only when acknowledged.
    let mut deleted = Vec::new();
    for round in 0..4 {
        for id in to_move {
            let folder = if round % 2 == 0 { "Old" } else { "Work" };
            let r = move_to(&app, id, folder).await;
            if !r.status().is_success() {
                assert_unavailable(r, "move on a full disk").await;
            }
        }
    }
    for id in to_delete {
        let r = delete(&app, id).await;
        if r.status().is_success() {
            deleted.push(id.clone());
        } else {
            assert_unavailable(r, "delete on a full disk").await;
        }
    }
    let r = readyz(&app).await;
    assert_problem(r, 503, "unavailable").await;

    disk.free();
    let r = readyz(&app).await;
    assert_eq!(r.status(), StatusCode::OK, "ready once space is back");
    // Every write succeeds now: none lands on a connection a failed commit left behind.
    let mut fresh = Vec::new();
    for i in 0..30 {
        let r = app
            .deposit(MBX, audio::wav_ulaw(0.5), "audio/wav", "")
            .await;
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "deposit {i} after the disk was freed: {body}"
        );
        let id = id_of(&body);
        let r = move_to(&app, &id, "Old").await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "move {i} after the disk was freed"
        );
        if i % 2 == 0 {
            let r = delete(&app, &id).await;
            assert_eq!(r.status(), StatusCode::NO_CONTENT, "delete {i}");
        } else {
            fresh.push(id);
        }
    }
    for id in to_move {
        let r = move_to(&app, id, "Family").await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "move {id} after the disk was freed"
        );
    }

    let after = contents(&app).await;
    for id in keep {
        assert_eq!(after.get(id), before.get(id), "message {id} unchanged");
    }
    for id in to_move {
        assert_eq!(after[id].0["folder"], "Family");
        assert_eq!(after[id].1, before[id].1, "audio of {id} unchanged");
    }
    for id in to_delete {
        let acknowledged = deleted.contains(id);
        assert_eq!(
            !after.contains_key(id),
            acknowledged,
            "message {id} is gone exactly when its delete was acknowledged"
        );
        if let Some((_, sha)) = after.get(id) {
            assert_eq!(*sha, before[id].1, "audio of {id} unchanged");
        }
    }
    for id in &fresh {
        assert_eq!(
            after[id].0["folder"], "Old",
            "message {id} stored and moved"
        );
    }
    let parts: Vec<_> = helpers::files_under(&audio_dir.join("tmp"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .collect();
    assert!(
        parts.is_empty(),
        "partial audio files left behind: {parts:?}"
    );
}

#[tokio::test]
async fn readyz_is_503_while_the_disk_of_the_sqlite_database_is_full() {
    let Some(disk) = SmallDisk::mount(8) else {
        return;
    };
    let db = disk.path().join("voxmail.db");
    // The audio stays on the roomy disk of the data directory: only the database cannot write.
    let app = TestApp::spawn_with_db(None, |c| {
        c.database.url = format!("sqlite://{}?mode=rwc", db.display());
        c.audio.store = voxmail::config::AudioStore::Fs;
        c.audio.dir = Default::default();
    })
    .await;
    app.create_mailbox(MBX, json!({})).await;
    app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    assert_eq!(readyz(&app).await.status(), StatusCode::OK);

    disk.fill();
    let body = assert_unavailable(readyz(&app).await, "readyz on a full database disk").await;
    assert!(
        body["detail"].as_str().unwrap().contains("full"),
        "the detail names the cause: {body}"
    );
    // Reads still work meanwhile.
    assert_eq!(helpers::list(&app, MBX, "").await.len(), 1);

    disk.free();
    assert_eq!(readyz(&app).await.status(), StatusCode::OK);
    app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
}

/// Cuts the link to the database (both ways a link fails), and checks that a listing, a deposit
/// and /readyz answer 503 within the acquire timeout plus a margin for a loaded CI machine (well
/// below the 10 s the pool used to wait); then restores it and checks that requests succeed again
/// at once, without a restart, and that every acknowledged message is still there.
async fn outage_of_the_database(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    let proxy = TcpProxy::start(upstream_of(&db.url).await).await;
    let proxied = proxy.url_for(&db.url);
    let app = TestApp::spawn_with_db(Some(db), |c| c.database.url = proxied).await;
    let acquire = Duration::from_millis(app.config.database.acquire_timeout_ms);
    assert_eq!(
        acquire,
        Duration::from_secs(2),
        "the default acquire timeout"
    );
    let bound = acquire + Duration::from_secs(3);
    app.create_mailbox(MBX, json!({"maxmsg": 200})).await;
    for _ in 0..3 {
        app.deposit_ok(MBX, audio::wav_ulaw(1.0), "audio/wav").await;
    }
    let mut acknowledged = contents(&app).await;

    for outage in [Outage::Refuse, Outage::Blackhole] {
        proxy.cut(outage);
        let started = Instant::now();
        let r = app
            .get(&format!("/v1/mailboxes/{MBX}/messages"))
            .send()
            .await
            .unwrap();
        let listing = started.elapsed();
        assert_unavailable(r, "listing without a database").await;
        let started = Instant::now();
        let r = app
            .deposit(MBX, audio::wav_ulaw(1.0), "audio/wav", "")
            .await;
        let deposit = started.elapsed();
        assert_unavailable(r, "deposit without a database").await;
        let started = Instant::now();
        let r = readyz(&app).await;
        let ready = started.elapsed();
        assert_unavailable(r, "readyz without a database").await;
        eprintln!(
            "{} {outage:?}: listing 503 in {listing:?}, deposit 503 in {deposit:?}, \
             readyz 503 in {ready:?} (acquire timeout {acquire:?})",
            backend.name()
        );
        for (what, took) in [
            ("listing", listing),
            ("deposit", deposit),
            ("readyz", ready),
        ] {
            assert!(
                took < bound,
                "{what} took {took:?} without a database ({outage:?}); bound {bound:?}"
            );
        }

        proxy.restore();
        assert_eq!(readyz(&app).await.status(), StatusCode::OK, "ready again");
        for _ in 0..3 {
            let m = app.deposit_ok(MBX, audio::wav_ulaw(0.5), "audio/wav").await;
            let id = id_of(&m);
            let sha = audio::sha256_hex(&helpers::audio_of(&app, MBX, &id).await);
            acknowledged.insert(
                id.clone(),
                (helpers::get_message(&app, MBX, &id).await, sha),
            );
        }
        assert_eq!(
            contents(&app).await,
            acknowledged,
            "every acknowledged message, unchanged, after the {outage:?} outage"
        );
    }
}

#[tokio::test]
async fn without_postgresql_requests_fail_fast_and_recover_when_it_is_back() {
    outage_of_the_database(Backend::Postgres).await;
}

#[tokio::test]
async fn without_mariadb_requests_fail_fast_and_recover_when_it_is_back() {
    outage_of_the_database(Backend::MySql).await;
}
