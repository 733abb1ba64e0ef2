//! The concurrency cases: exact msgnum/maxmsg under concurrent deposits from two nodes, outbox
//! order under concurrent writers, exactly-once dispatch and leased jobs (email, webhook
//! deliveries, MWI pushes) claimed by one node only, and wake-ups across nodes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use voxmail::domain::{EventFilter, Folder, MailboxAddress};
use voxmail::store::{
    Inserted, MailboxChanges, MessageStore, MwiTargetKind, MwiTargetRecord, NewWebhook, SqlStore,
    StoreError,
};

use crate::db::{Backend, TestDb};
use crate::{connect, new_message, on_every_backend};

on_every_backend!(
    concurrent_deposits_fill_a_mailbox_exactly,
    a_concurrent_reader_sees_every_event_once,
    two_nodes_dispatch_each_event_once,
    two_nodes_claim_each_job_once,
    a_commit_on_one_node_wakes_the_others
);

async fn mailbox(store: &SqlStore, mailbox: &str) -> voxmail::store::MailboxRecord {
    if store.get_context("acme").await.is_err() {
        let _ = store.create_context("acme", "").await;
    }
    store
        .create_mailbox(
            &MailboxAddress::new(mailbox, "acme").expect("address"),
            MailboxChanges::default(),
        )
        .await
        .expect("mailbox")
}

/// 60 deposits at once (over two nodes) into a mailbox with maxmsg 50: exactly 50 stored with
/// msgnums 0..49, the other 10 refused as full.
async fn concurrent_deposits_fill_a_mailbox_exactly(store: Arc<SqlStore>, db: &TestDb) {
    let other_node = connect(db, "node-b").await;
    let m = mailbox(&store, "100").await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other_node.clone()
        };
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_message(&m, new_message(Folder::Inbox), 50, None)
                .await
        }));
    }
    let (mut created, mut full) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(Inserted::Created(_)) => created += 1,
            Err(StoreError::MailboxFull { max: 50, .. }) => full += 1,
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!((created, full), (50, 10));
    let listed = store.list_messages(&m, None, None, 100).await.unwrap();
    let nums: BTreeSet<i64> = listed.items.iter().map(|x| x.msgnum).collect();
    assert_eq!(listed.items.len(), 50);
    assert_eq!(nums, (0..50).collect::<BTreeSet<_>>());
    assert_eq!(store.counts(&m).await.unwrap().new, 50);
    other_node.close().await;
}

/// Many writers over several mailboxes and nodes while a consumer reads the outbox by seq: the
/// consumer must see every event exactly once (no event commits behind a seq already read).
async fn a_concurrent_reader_sees_every_event_once(store: Arc<SqlStore>, db: &TestDb) {
    let nodes = [store.clone(), connect(db, "node-b").await];
    let mut boxes = Vec::new();
    for i in 0..8 {
        boxes.push(mailbox(&store, &format!("{}", 300 + i)).await);
    }
    let start = store.last_event_seq().await.unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = start;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let batch = store
                    .events_after(last, 7, &EventFilter::default())
                    .await
                    .expect("read");
                for e in &batch {
                    assert!(e.seq > last);
                    last = e.seq;
                    seen.push(e.seq);
                }
                if batch.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let writers = if db.backend == Backend::Sqlite {
        100
    } else {
        240
    };
    let mut tasks = Vec::new();
    for i in 0..writers {
        let s = nodes[i % 2].clone();
        let m = boxes[i % boxes.len()].clone();
        tasks.push(tokio::spawn(async move {
            let msg = new_message(Folder::Inbox);
            let id = msg.id;
            s.insert_message(&m, msg, 10_000, None)
                .await
                .expect("deposit");
            if i % 3 == 0 {
                s.update_message(&m, id, None, Some(true), 10_000)
                    .await
                    .expect("mark read");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.expect("reader");
    let all: Vec<i64> = store
        .events_after(start, 100_000, &EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(all.len(), writers + writers.div_ceil(3));
    assert_eq!(
        seen, all,
        "the concurrent reader skipped or repeated events"
    );
    nodes[1].close().await;
}

/// Two nodes dispatch webhook deliveries at the same time as writers commit: every event becomes
/// exactly one delivery.
async fn two_nodes_dispatch_each_event_once(store: Arc<SqlStore>, db: &TestDb) {
    let b = connect(db, "node-b").await;
    let m = mailbox(&store, "100").await;
    assert_eq!(store.dispatch_webhook_events(50).await.unwrap(), 0);
    store
        .create_webhook(NewWebhook {
            id: "wh".into(),
            context: "acme".into(),
            url: "http://127.0.0.1:9/".into(),
            event_types: Vec::new(),
            secret: "s".into(),
            active: true,
        })
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut dispatchers = Vec::new();
    for node in [store.clone(), b.clone()] {
        let stop = stop.clone();
        dispatchers.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let last_round = stop.load(std::sync::atomic::Ordering::SeqCst);
                n += node.dispatch_webhook_events(10).await.expect("dispatch");
                if last_round {
                    return n;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut writers = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 { store.clone() } else { b.clone() };
        let m = m.clone();
        writers.push(tokio::spawn(async move {
            s.insert_message(&m, new_message(Folder::Inbox), 1000, None)
                .await
                .expect("deposit");
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut consumed = 0;
    for d in dispatchers {
        consumed += d.await.expect("dispatcher");
    }
    consumed += store.dispatch_webhook_events(1000).await.unwrap();
    assert_eq!(consumed, 60);
    let deliveries = store.list_deliveries("wh", None, 1000).await.unwrap();
    let seqs: BTreeSet<i64> = deliveries.iter().map(|d| d.event_seq).collect();
    assert_eq!((deliveries.len(), seqs.len()), (60, 60));
    b.close().await;
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("ms fit")
}

/// Claims with `claim` from 8 tasks over two nodes until nothing is left; returns every claimed key.
async fn claim_everything<F, Fut>(nodes: [Arc<SqlStore>; 2], claim: F) -> Vec<String>
where
    F: Fn(Arc<SqlStore>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<String>> + Send,
{
    let mut tasks = Vec::new();
    for i in 0..8 {
        let node = nodes[i % 2].clone();
        let claim = claim.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(node.clone()).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got);
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("claimer"));
    }
    all
}

fn assert_once(claimed: Vec<String>, expected: usize, what: &str) {
    let unique: BTreeSet<&String> = claimed.iter().collect();
    assert_eq!(
        (claimed.len(), unique.len()),
        (expected, expected),
        "{what}: every job claimed exactly once"
    );
}

/// Email jobs, webhook deliveries and MWI pushes, claimed by 8 workers on two nodes at once: each
/// is leased to exactly one of them.
async fn two_nodes_claim_each_job_once(store: Arc<SqlStore>, db: &TestDb) {
    let b = connect(db, "node-b").await;
    store.create_context("acme", "").await.unwrap();
    assert_eq!(store.dispatch_webhook_events(100).await.unwrap(), 0);
    assert_eq!(store.dispatch_mwi_events(100).await.unwrap(), 0);
    store
        .create_webhook(NewWebhook {
            id: "wh".into(),
            context: "acme".into(),
            url: "http://127.0.0.1:9/".into(),
            event_types: vec!["message.deposited".into()],
            secret: "s".into(),
            active: true,
        })
        .await
        .unwrap();
    store
        .create_mwi_target(&MwiTargetRecord {
            id: "t".into(),
            context: "acme".into(),
            kind: MwiTargetKind::Ari,
            url: "http://127.0.0.1:9".into(),
            username: String::new(),
            secret: String::new(),
            mailbox: String::new(),
            active: true,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    for i in 0..10 {
        let m = store
            .create_mailbox(
                &MailboxAddress::new(&format!("{}", 400 + i), "acme").unwrap(),
                MailboxChanges {
                    email: Some(format!("u{i}@example.com")),
                    ..MailboxChanges::default()
                },
            )
            .await
            .unwrap();
        for _ in 0..3 {
            store
                .insert_message(&m, new_message(Folder::Inbox), 100, None)
                .await
                .unwrap();
        }
    }
    while store.dispatch_webhook_events(100).await.unwrap() > 0 {}
    while store.dispatch_mwi_events(100).await.unwrap() > 0 {}
    let at = now_ms() + 1000;
    let nodes = [store.clone(), b.clone()];

    let emails = claim_everything(nodes.clone(), move |s| async move {
        s.claim_email_jobs(at, 60_000, 3)
            .await
            .expect("claim email")
            .into_iter()
            .map(|j| j.id.to_string())
            .collect()
    })
    .await;
    assert_once(emails, 30, "email jobs");

    // One delivery per (webhook, mailbox) is eligible at a time: the first of each mailbox.
    let deliveries = claim_everything(nodes.clone(), move |s| async move {
        s.claim_deliveries(at, 60_000, 3)
            .await
            .expect("claim deliveries")
            .into_iter()
            .map(|j| j.id.to_string())
            .collect()
    })
    .await;
    assert_once(deliveries, 10, "webhook deliveries");

    let pushes = claim_everything(nodes, move |s| async move {
        s.claim_mwi_pushes(at, 60_000, 3)
            .await
            .expect("claim pushes")
            .into_iter()
            .map(|j| j.mailbox_id.to_string())
            .collect()
    })
    .await;
    assert_once(pushes, 10, "MWI pushes");
    b.close().await;
}

/// A change committed on node A wakes node B's consumers (PostgreSQL NOTIFY, MySQL outbox poll).
async fn a_commit_on_one_node_wakes_the_others(store: Arc<SqlStore>, db: &TestDb) {
    if db.backend == Backend::Sqlite {
        return; // one node per SQLite file: commits wake the local consumers directly
    }
    let b = connect(db, "node-b").await;
    let wake = Arc::new(tokio::sync::watch::Sender::new(0u64));
    let mut rx = wake.subscribe();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    b.watch_other_nodes(
        wake.clone(),
        Duration::from_millis(50),
        shutdown.clone(),
        &tracker,
    );
    let m = mailbox(&store, "100").await;
    // The watcher wakes once when it has started (LISTEN done, or the first seq read); then the
    // deposit's wake.
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("node B's watcher did not start within 5 s")
        .expect("wake channel open");
    rx.borrow_and_update();
    store
        .insert_message(&m, new_message(Folder::Inbox), 10, None)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("node B was not woken within 5 s")
        .expect("wake channel open");
    if db.backend == Backend::Postgres {
        // The listening connection dies: node B reconnects and is woken by the next commit again.
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        let listeners = "SELECT pid FROM pg_stat_activity \
                         WHERE datname = current_database() AND query LIKE 'LISTEN%'";
        let old: Vec<(i32,)> = sqlx::query_as(listeners)
            .fetch_all(&mut admin)
            .await
            .unwrap();
        assert_eq!(old.len(), 1, "one listener connection");
        let (killed,): (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)")
            .bind(old[0].0)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(killed);
        // It reconnects and LISTENs again: a new backend shows the statement.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now: Vec<(i32,)> = sqlx::query_as(listeners)
                .fetch_all(&mut admin)
                .await
                .unwrap();
            if now.iter().any(|(pid,)| *pid != old[0].0) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node B's listener did not LISTEN again"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rx.borrow_and_update();
        store
            .insert_message(&m, new_message(Folder::Inbox), 10, None)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("node B was not woken after its listener reconnected")
            .expect("wake channel open");
    }
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    b.close().await;
}
