//! The orphan collector: audio that no committed row references (a crash between "audio written"
//! and "row committed", a removal that failed, a stale rendition) goes once older than the grace
//! period; everything a message or greeting still uses stays, byte for byte.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::TestApp;
use crate::common::audio::{sha256_hex, wav_ulaw};
use crate::helpers::{audio_of, id_of};
use voxmail::blob::{BlobKey, BlobStore};

const MB: &str = "1001@default";
const HOUR_MS: i64 = 3_600_000;

async fn put(store: &dyn BlobStore, key: &str, bytes: &[u8]) {
    let key = BlobKey::from_stored(key).expect("key");
    let mut w = store.writer(&key).await.expect("writer");
    w.write(bytes).await.expect("write");
    w.commit().await.expect("commit");
}

async fn exists(store: &dyn BlobStore, key: &str) -> bool {
    store
        .size(&BlobKey::from_stored(key).expect("key"))
        .await
        .is_ok()
}

/// The mailbox's internal id (part of its audio keys; the API shows only `mailbox@context`).
async fn mailbox_id(app: &TestApp) -> String {
    let vm = app.services().await;
    let address: voxmail::domain::MailboxAddress = MB.parse().expect("address");
    vm.get_mailbox(&voxmail::domain::Principal::local_admin(), &address)
        .await
        .expect("mailbox")
        .id
        .to_string()
}

#[tokio::test]
async fn orphans_older_than_the_grace_period_go_and_referenced_audio_stays() {
    let app = TestApp::spawn_with(|c| {
        c.audio.orphan_grace_secs = 3600;
        c.audio.orphan_sweep_secs = 3600;
    })
    .await;
    app.create_context("default").await;
    app.create_mailbox(MB, json!({})).await;
    let mailbox_id = mailbox_id(&app).await;

    let kept_audio = wav_ulaw(3.0);
    let kept = app.deposit_ok(MB, kept_audio.clone(), "audio/wav").await;
    let kept_id = id_of(&kept);
    // A cached rendition of a live message stays with it.
    let r = app
        .get(&format!(
            "/v1/mailboxes/{MB}/messages/{kept_id}/audio?format=ulaw"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rendition_bytes = r.bytes().await.unwrap();
    let greeting = wav_ulaw(2.0);
    let r = app
        .put(&format!("/v1/mailboxes/{MB}/greetings/busy"))
        .header("content-type", "audio/wav")
        .body(greeting.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "greeting: {}", r.status());

    let vm = app.services().await;
    let store = vm.blob_store();
    // What a node killed between writing the audio and committing the row leaves behind.
    let lost = format!("messages/{mailbox_id}/{}.audio", uuid::Uuid::now_v7());
    let lost_rendition = format!("{lost}.r1-opus-16000");
    let lost_greeting = format!("greetings/{mailbox_id}/busy-{}.audio", uuid::Uuid::now_v7());
    let stale_rendition_of_kept = format!("messages/{mailbox_id}/{kept_id}.audio.r0-opus-16000");
    for k in [
        &lost,
        &lost_rendition,
        &lost_greeting,
        &stale_rendition_of_kept,
    ] {
        put(store.as_ref(), k, b"RIFF orphan").await;
    }

    let now = voxmail::domain::now_ms();
    // Inside the grace period nothing is judged, not even on a dry run.
    let young = vm.collect_orphans(now, true).await.unwrap();
    assert_eq!(young.removed, 0, "{young:?}");
    // A dry run later counts without removing.
    let dry = vm.collect_orphans(now + 2 * HOUR_MS, true).await.unwrap();
    assert_eq!(dry.removed, 3, "{dry:?}");
    assert!(exists(store.as_ref(), &lost).await);

    let done = vm.collect_orphans(now + 2 * HOUR_MS, false).await.unwrap();
    assert_eq!(done.removed, 3, "{done:?}");
    assert_eq!(done.failed, 0, "{done:?}");
    for k in [&lost, &lost_rendition, &lost_greeting] {
        assert!(!exists(store.as_ref(), k).await, "{k} removed");
    }
    // A stale-format rendition of a live message is not an orphan (its original is referenced).
    assert!(exists(store.as_ref(), &stale_rendition_of_kept).await);

    // Everything in use is intact.
    assert_eq!(
        sha256_hex(&audio_of(&app, MB, &kept_id).await),
        sha256_hex(&kept_audio)
    );
    let again = app
        .get(&format!(
            "/v1/mailboxes/{MB}/messages/{kept_id}/audio?format=ulaw"
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(again, rendition_bytes);
    let g = app
        .get(&format!("/v1/mailboxes/{MB}/greetings/busy"))
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), StatusCode::OK);
    assert_eq!(g.bytes().await.unwrap().as_ref(), greeting.as_slice());

    // A second pass finds nothing more.
    let second = vm.collect_orphans(now + 2 * HOUR_MS, false).await.unwrap();
    assert_eq!(second.removed, 0, "{second:?}");

    // Once the message is deleted (and its removal "failed": we put the audio back), the audio
    // and every rendition are orphans.
    let r = app
        .delete(&format!("/v1/mailboxes/{MB}/messages/{kept_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let kept_key = format!("messages/{mailbox_id}/{kept_id}.audio");
    put(store.as_ref(), &kept_key, b"RIFF back").await;
    let last = vm.collect_orphans(now + 4 * HOUR_MS, false).await.unwrap();
    assert_eq!(
        last.removed, 2,
        "the audio and its stale rendition: {last:?}"
    );
    assert!(!exists(store.as_ref(), &kept_key).await);
    assert!(!exists(store.as_ref(), &stale_rendition_of_kept).await);
}

#[tokio::test]
async fn the_collector_runs_by_itself_and_spares_young_audio() {
    let app = TestApp::spawn_with(|c| {
        c.audio.orphan_grace_secs = 1;
        c.audio.orphan_sweep_secs = 1;
    })
    .await;
    app.create_context("default").await;
    app.create_mailbox(MB, json!({})).await;
    let mailbox_id = mailbox_id(&app).await;
    let audio = wav_ulaw(1.0);
    let kept = app.deposit_ok(MB, audio.clone(), "audio/wav").await;
    let vm = app.services().await;
    let store = vm.blob_store();
    let lost = format!("messages/{mailbox_id}/{}.audio", uuid::Uuid::now_v7());
    put(store.as_ref(), &lost, b"RIFF orphan").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while exists(store.as_ref(), &lost).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the background collector did not remove {lost}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        sha256_hex(&audio_of(&app, MB, &id_of(&kept)).await),
        sha256_hex(&audio)
    );
}
