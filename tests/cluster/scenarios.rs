//! The cluster scenarios.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::audio;
use crate::common::db::Backend;
use crate::common::sse::SseClient;
use crate::harness::{Cluster, Collector};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const MBX: &str = "1001@default";

/// Deposits `body` (a WAV) through node `node`; returns the status and the JSON answer.
async fn deposit(
    cluster: &Cluster,
    node: usize,
    query: &str,
    idempotency_key: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut req = cluster
        .post(node, &format!("/v1/mailboxes/{MBX}/messages{query}"))
        .header("content-type", "audio/wav");
    if let Some(k) = idempotency_key {
        req = req.header("idempotency-key", k);
    }
    let r = req.body(body).send().await.expect("deposit answered");
    let status = r.status();
    let body = r.json().await.expect("deposit answer is JSON");
    (status, body)
}

fn id_of(m: &Value) -> String {
    m["id"].as_str().expect("message id").to_owned()
}

/// A deposit on A is listed and played on B, byte for byte and as Opus, and C's event stream
/// tells of it with the new counts.
async fn deposit_on_a_read_on_b_event_on_c(backend: Backend) {
    let Some(cluster) = Cluster::start(backend, 3).await else {
        return;
    };
    cluster.create_mailbox(A, MBX, json!({})).await;
    let mut sse = SseClient::connect(
        &cluster.node(C).url(&format!("/v1/events?mailbox={MBX}")),
        &cluster.admin,
        None,
    )
    .await;
    assert_eq!(sse.status, 200, "SSE on C");

    let sent = audio::wav_ulaw(2.0);
    let (status, m) = deposit(&cluster, A, "?caller_id_num=5551234", None, sent.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "deposit on A: {m}");
    let id = id_of(&m);

    let listed = cluster.list(B, MBX).await;
    assert_eq!(listed.len(), 1, "B lists A's deposit: {listed:?}");
    assert_eq!(listed[0]["id"], m["id"]);
    assert_eq!(listed[0]["caller_id_num"], "5551234");
    assert_eq!(listed[0]["msgnum"], 0);
    let (ct, stored) = cluster.audio(B, MBX, &id, "").await;
    assert_eq!(ct, "audio/wav");
    assert_eq!(
        audio::sha256_hex(&stored),
        audio::sha256_hex(&sent),
        "B plays A's recording byte for byte"
    );
    let (ct, opus) = cluster.audio(B, MBX, &id, "?format=opus").await;
    assert_eq!(ct, "audio/ogg; codecs=opus");
    assert_eq!(&opus[..4], b"OggS", "an Ogg Opus rendition");
    assert!(opus.len() > 1000, "2 s of Opus: {} bytes", opus.len());

    // The event: whatever came before it (the mailbox's creation), C streams the deposit.
    let deadline = Instant::now() + Duration::from_secs(15);
    let event = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = sse
            .next(left)
            .await
            .expect("C streams the deposit's event within 15 s");
        if e.event == "message.deposited" {
            break e.json();
        }
    };
    assert_eq!(event["mailbox"], MBX);
    assert_eq!(event["message_id"], m["id"]);
    assert_eq!(
        event["node"], "node-a",
        "the event tells which node stored it"
    );
    let c = &event["counts"];
    assert_eq!(
        (&c["new"], &c["old"], &c["urgent_new"], &c["urgent_old"]),
        (&json!(1), &json!(0), &json!(0), &json!(0)),
        "{event}"
    );
    // An urgent deposit on B: C's next event has the counts after it.
    let (status, m2) = deposit(&cluster, B, "?urgent=true", None, audio::wav_ulaw(1.0)).await;
    assert_eq!(status, StatusCode::CREATED, "deposit on B: {m2}");
    let e = sse
        .next(Duration::from_secs(15))
        .await
        .expect("C streams B's deposit");
    assert_eq!(e.event, "message.deposited");
    let e = e.json();
    assert_eq!(e["message_id"], m2["id"]);
    assert_eq!(e["node"], "node-b");
    assert_eq!(
        (&e["counts"]["new"], &e["counts"]["urgent_new"]),
        (&json!(2), &json!(1))
    );
    let mwi: Value = cluster
        .get(C, &format!("/v1/mailboxes/{MBX}/mwi"))
        .send()
        .await
        .expect("mwi")
        .json()
        .await
        .expect("mwi JSON");
    assert_eq!(
        (&mwi["new"], &mwi["urgent_new"]),
        (&json!(2), &json!(1)),
        "{mwi}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deposit_on_a_is_read_on_b_and_streamed_on_c() {
    deposit_on_a_read_on_b_event_on_c(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_deposit_on_a_is_read_on_b_and_streamed_on_c() {
    deposit_on_a_read_on_b_event_on_c(Backend::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_deposits_over_three_nodes_fill_maxmsg_50_exactly() {
    let Some(cluster) = Cluster::start(Backend::Postgres, 3).await else {
        return;
    };
    cluster.create_mailbox(A, MBX, json!({"maxmsg": 50})).await;
    let body = audio::wav_ulaw(0.5);
    let answers = join_all((0..60).map(|i| {
        let body = body.clone();
        let cluster = &cluster;
        async move { deposit(cluster, i % 3, &format!("?caller_id_num={i}"), None, body).await }
    }))
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let full: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| s.as_u16() == 507)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((created, full.len()), (50, 10), "{answers:?}");
    for p in full {
        assert_eq!(p["type"], "/problems/mailbox-full", "{p}");
    }
    let listed = cluster.list(C, MBX).await;
    assert_eq!(listed.len(), 50);
    let msgnums: BTreeSet<i64> = listed
        .iter()
        .map(|m| m["msgnum"].as_i64().expect("msgnum"))
        .collect();
    assert_eq!(msgnums, (0..50).collect(), "msgnums 0..=49, each once");
    let ids: BTreeSet<String> = listed.iter().map(id_of).collect();
    let answered: BTreeSet<String> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, m)| id_of(m))
        .collect();
    assert_eq!(
        ids, answered,
        "exactly the acknowledged deposits are listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_holds_across_nodes() {
    let Some(cluster) = Cluster::start(Backend::Postgres, 3).await else {
        return;
    };
    cluster.create_mailbox(A, MBX, json!({})).await;
    let body = audio::wav_ulaw(1.0);
    let (status, first) = deposit(&cluster, A, "", Some("call-1"), body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    for node in [B, C] {
        let (status, retry) = deposit(&cluster, node, "", Some("call-1"), body.clone()).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a retry on node {node} is 200: {retry}"
        );
        assert_eq!(
            retry["id"], first["id"],
            "the retry answers the first message"
        );
    }
    // Nine tries of one key at once, three per node: one message.
    let answers = join_all((0..9).map(|i| {
        let (body, cluster) = (body.clone(), &cluster);
        async move { deposit(cluster, i % 3, "", Some("call-2"), body).await }
    }))
    .await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "one try creates it: {answers:?}");
    assert!(
        answers.iter().all(|(s, _)| s.is_success()),
        "the others answer it: {answers:?}"
    );
    let ids: BTreeSet<String> = answers.iter().map(|(_, m)| id_of(m)).collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let listed = cluster.list(B, MBX).await;
    assert_eq!(listed.len(), 2, "one message per key: {listed:?}");
    // Only the audio of the two messages is stored.
    let keys = cluster.storage.keys().await;
    assert_eq!(
        keys.len(),
        2,
        "the losing tries' audio is removed: {keys:?}"
    );
}

/// What became of one deposit against a node that was killed.
#[derive(Debug)]
enum Outcome {
    /// The server answered (status, and the JSON unless the body was cut off).
    Answered(StatusCode, Option<Value>),
    /// No answer: connection refused or reset.
    Failed(String),
}

/// POSTs `body` in four pieces 100 ms apart, so the request is still being received a while.
async fn slow_deposit(
    client: reqwest::Client,
    url: String,
    admin: String,
    body: Vec<u8>,
) -> Outcome {
    let pieces: Vec<Bytes> = body
        .chunks(body.len().div_ceil(4))
        .map(Bytes::copy_from_slice)
        .collect();
    let stream =
        futures_util::stream::iter(pieces.into_iter().enumerate()).then(|(i, p)| async move {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<Bytes, std::io::Error>(p)
        });
    let r = client
        .post(url)
        .bearer_auth(admin)
        .header("content-type", "audio/wav")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    match r {
        Ok(r) => {
            let status = r.status();
            Outcome::Answered(status, r.json().await.ok())
        }
        Err(e) => Outcome::Failed(format!("{e:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_deposit_keeps_every_acknowledged_message_and_leaks_no_audio() {
    let Some(mut cluster) = Cluster::start(Backend::Postgres, 3).await else {
        return;
    };
    cluster.create_mailbox(A, MBX, json!({"maxmsg": 500})).await;
    // An object of our shape no row references, as a crash leaves one.
    let planted = format!(
        "messages/{}/{}.audio",
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7()
    );
    cluster.storage.plant(&planted, audio::wav_ulaw(0.5)).await;

    // 50 deposits against A and 10 against B, 15 ms apart, each sent over 300 ms; A is killed
    // once 15 of its deposits have been answered.
    let bodies: Vec<Vec<u8>> = (0..60)
        .map(|i| audio::wav_ulaw(0.5 + f64::from(i) * 0.01))
        .collect();
    let answered_by_a = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let node = if i % 6 == 5 { B } else { A };
        let url = cluster
            .node(node)
            .url(&format!("/v1/mailboxes/{MBX}/messages?caller_id_num={i}"));
        let (client, admin, body) = (cluster.client.clone(), cluster.admin.clone(), body.clone());
        let counter = answered_by_a.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(15 * i as u64)).await;
            let out = slow_deposit(client, url, admin, body).await;
            if node == A && matches!(out, Outcome::Answered(..)) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            (i, node, out)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered_by_a.load(Ordering::SeqCst) < 15 {
        assert!(
            Instant::now() < deadline,
            "A answered 15 deposits within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(A).await;
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("deposit task"));
    }

    let mut acked = BTreeSet::new();
    let mut failed = BTreeSet::new();
    for (i, node, out) in &outcomes {
        match out {
            Outcome::Answered(s, m) => {
                assert_eq!(*s, StatusCode::CREATED, "deposit {i} on {node}: {m:?}");
                acked.insert(*i);
            }
            Outcome::Failed(e) => {
                assert_eq!(*node, A, "only A's deposits fail, but {i} on B: {e}");
                failed.insert(*i);
            }
        }
    }
    let acked_on_a = acked.iter().filter(|i| *i % 6 != 5).count();
    assert!(acked_on_a >= 15, "{outcomes:?}");
    assert!(
        !failed.is_empty(),
        "the kill cut some deposits off: {outcomes:?}"
    );

    // B lists every acknowledged deposit. A deposit that got no answer is either absent or, if
    // its transaction committed in the instant before the kill (before the answer was written),
    // complete: everything listed plays byte for byte.
    let listed = cluster.list(B, MBX).await;
    let by_caller: BTreeMap<usize, &Value> = listed
        .iter()
        .map(|m| {
            let i = m["caller_id_num"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("caller_id_num is the deposit's index");
            (i, m)
        })
        .collect();
    assert_eq!(by_caller.len(), listed.len(), "each deposit listed once");
    for i in &acked {
        assert!(
            by_caller.contains_key(i),
            "acknowledged deposit {i} is listed"
        );
    }
    let unanswered_but_stored: Vec<usize> = by_caller
        .keys()
        .filter(|i| !acked.contains(i))
        .copied()
        .collect();
    for i in &unanswered_but_stored {
        assert!(
            failed.contains(i),
            "deposit {i} is listed but was never sent"
        );
    }
    let ids: BTreeSet<String> = listed.iter().map(id_of).collect();
    async fn plays_byte_for_byte(
        cluster: &Cluster,
        node: usize,
        by_caller: &BTreeMap<usize, &Value>,
        bodies: &[Vec<u8>],
    ) {
        for (i, m) in by_caller {
            let (_, stored) = cluster.audio(node, MBX, &id_of(m), "").await;
            assert!(
                stored == bodies[*i],
                "deposit {i} plays byte for byte from node {node}"
            );
        }
    }
    plays_byte_for_byte(&cluster, B, &by_caller, &bodies).await;

    // The store holds the listed messages' audio, the planted orphan and whatever the kill left.
    let before = cluster.storage.keys().await;
    assert!(before.contains(&planted), "{before:?}");
    let stem = |k: &String| {
        k.rsplit('/')
            .next()
            .and_then(|f| f.split('.').next())
            .unwrap_or_default()
            .to_owned()
    };
    for id in &ids {
        assert!(
            before.iter().any(|k| stem(k) == *id),
            "audio of {id} is stored"
        );
    }

    // B restarts with the orphan collector on (grace 2 s, a pass every second): it removes
    // everything no message references, and nothing else.
    cluster.nodes[B].collector = Collector {
        grace_secs: 2,
        sweep_secs: 1,
    };
    cluster.restart(B).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let keys = cluster.storage.keys().await;
        if keys.len() <= ids.len() || Instant::now() > deadline {
            break keys;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let after_ids: BTreeSet<String> = after.iter().map(stem).collect();
    assert_eq!(
        after.len(),
        ids.len(),
        "one object per listed message after the collector ran (was {}): {after:?}",
        before.len()
    );
    assert_eq!(after_ids, ids, "exactly the referenced objects remain");

    // Everything still plays, from C and from A started again.
    plays_byte_for_byte(&cluster, C, &by_caller, &bodies).await;
    cluster.restart(A).await;
    assert_eq!(cluster.list(A, MBX).await.len(), listed.len());
    eprintln!(
        "{} of A's deposits acknowledged, {} cut off ({} of those committed before the kill); \
         {} objects before the collector ran, {} after",
        acked_on_a,
        failed.len(),
        unanswered_but_stored.len(),
        before.len(),
        after.len()
    );
}
