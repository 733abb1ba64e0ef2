//! What the orphan collector relies on: which audio keys committed rows reference (found through
//! primary keys), and one node per interval taking the cluster-wide turn. Also the IMAP watch
//! claims the nodes split their watching by.

use std::collections::HashSet;
use std::sync::Arc;

use voxmail::domain::{AudioFormat, Folder, GreetingKind, MailboxAddress, MessageId, now_secs};
use voxmail::store::{GreetingRecord, Inserted, MailboxChanges, MessageStore, SqlStore};

use crate::db::TestDb;
use crate::{connect, new_message, on_every_backend};

on_every_backend!(
    referenced_keys,
    one_node_takes_each_turn,
    imap_watch_claims_age_out
);

async fn referenced_keys(store: Arc<SqlStore>, _db: &TestDb) {
    store.create_context("acme", "").await.unwrap();
    let a = store
        .create_mailbox(
            &MailboxAddress::new("100", "acme").unwrap(),
            MailboxChanges::default(),
        )
        .await
        .unwrap();
    let mut m = new_message(Folder::Inbox);
    m.audio_key = format!("messages/{}/{}.audio", a.id, m.id);
    let kept = m.audio_key.clone();
    let Inserted::Created(_) = store.insert_message(&a, m, 10, None).await.unwrap() else {
        panic!("a new message")
    };
    let greeting_key = format!("greetings/{}/busy-{}.audio", a.id, MessageId::new());
    store
        .put_greeting(
            &a,
            GreetingRecord {
                mailbox_id: a.id,
                kind: GreetingKind::Busy,
                audio_key: greeting_key.clone(),
                audio_format: AudioFormat::WavPcm,
                sample_rate: 8000,
                channels: 1,
                duration_ms: 1000,
                byte_size: 16_044,
                sha256: "cd".repeat(32),
                updated_at: now_secs(),
                asterisk_recording: None,
            },
        )
        .await
        .unwrap();

    let orphan = format!("messages/{}/{}.audio", a.id, MessageId::new());
    let old_greeting = format!("greetings/{}/busy-{}.audio", a.id, MessageId::new());
    // Same message id, other mailbox: a key the row does not name is not referenced.
    let moved = kept.replace(&a.id.to_string(), &MessageId::new().to_string());
    let mut keys = vec![
        kept.clone(),
        greeting_key.clone(),
        orphan,
        old_greeting,
        moved,
        "tmp/x.part".into(),
    ];
    // More than one IN (…) batch.
    for _ in 0..1200 {
        keys.push(format!("messages/{}/{}.audio", a.id, MessageId::new()));
    }
    let found = store.referenced_audio_keys(&keys).await.unwrap();
    assert_eq!(found, HashSet::from([kept, greeting_key]));
}

async fn one_node_takes_each_turn(store: Arc<SqlStore>, db: &TestDb) {
    let other = connect(db, "node-b").await;
    let t0 = 1_800_000_000_000;
    assert!(
        store.take_turn("gc", t0, 60_000).await.unwrap(),
        "first turn"
    );
    assert!(!other.take_turn("gc", t0 + 1, 60_000).await.unwrap());
    assert!(!store.take_turn("gc", t0 + 59_999, 60_000).await.unwrap());
    assert!(other.take_turn("gc", t0 + 60_000, 60_000).await.unwrap());
    assert!(!store.take_turn("gc", t0 + 60_001, 60_000).await.unwrap());

    // Many nodes at once: exactly one wins a due turn.
    let nodes: Vec<Arc<SqlStore>> = [store.clone(), other.clone()]
        .into_iter()
        .cycle()
        .take(8)
        .collect();
    let tasks: Vec<_> = nodes
        .into_iter()
        .map(|n| tokio::spawn(async move { n.take_turn("gc", t0 + 200_000, 60_000).await }))
        .collect();
    assert_eq!(winners(tasks).await, 1, "one node takes a due turn");
    // A brand-new job name: concurrent first callers also yield exactly one winner.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let n = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move { n.take_turn("fresh", t0, 60_000).await })
        })
        .collect();
    assert_eq!(
        winners(tasks).await,
        1,
        "one node takes the first turn of a new job"
    );
    other.close().await;
}

/// How many of the concurrent `take_turn` calls won.
async fn winners(
    tasks: Vec<tokio::task::JoinHandle<Result<bool, voxmail::store::StoreError>>>,
) -> usize {
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() {
            wins += 1;
        }
    }
    wins
}

/// Claims to watch an IMAP context: renewed, listed while fresh, per context, withdrawn, and
/// concurrent first claims of one node (two processes with one `node_id`) do not fail.
async fn imap_watch_claims_age_out(store: Arc<SqlStore>, db: &TestDb) {
    let other = connect(db, "node-b").await;
    let t0 = 1_800_000_000_000;
    let lease = 15_000;
    let fresh = move |now: i64| now - lease;
    assert_eq!(
        store
            .renew_imap_watch("acme", "node-a", t0, fresh(t0))
            .await
            .unwrap(),
        vec!["node-a"]
    );
    assert_eq!(
        other
            .renew_imap_watch("acme", "node-b", t0 + 1_000, fresh(t0 + 1_000))
            .await
            .unwrap(),
        vec!["node-a", "node-b"]
    );
    // Another context is its own set.
    assert_eq!(
        other
            .renew_imap_watch("zeta", "node-b", t0 + 1_000, fresh(t0 + 1_000))
            .await
            .unwrap(),
        vec!["node-b"]
    );
    // node-a stops renewing: once its claim is older than the lease, node-b watches alone.
    let later = t0 + 1_000 + lease;
    assert_eq!(
        other
            .renew_imap_watch("acme", "node-b", later, fresh(later))
            .await
            .unwrap(),
        vec!["node-b"]
    );
    // It renews again: back in (its row was kept, not duplicated).
    assert_eq!(
        store
            .renew_imap_watch("acme", "node-a", later, fresh(later))
            .await
            .unwrap(),
        vec!["node-a", "node-b"]
    );
    // Withdrawn: gone at once.
    store.leave_imap_watch("acme", "node-a").await.unwrap();
    assert_eq!(
        other
            .renew_imap_watch("acme", "node-b", later + 1, fresh(later + 1))
            .await
            .unwrap(),
        vec!["node-b"]
    );
    // Two processes with one node name claim at the same moment: both succeed, one row.
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let n = if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                n.renew_imap_watch("fresh-ctx", "twin", later, fresh(later))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), vec!["twin"]);
    }
    // Rows a day old are removed by the next renewal of the context.
    let next_day = later + 86_400_001;
    assert_eq!(
        store
            .renew_imap_watch("fresh-ctx", "node-a", next_day, 0)
            .await
            .unwrap(),
        vec!["node-a"],
        "the day-old claim of twin is gone even for a reader that accepts any age"
    );
    other.close().await;
}
