//! Two nodes on one database share the watching of an IMAP context (issue #6): each mailbox has
//! one watcher connection in the cluster — counted by Dovecot itself (`doveadm who`) — not one
//! per node; the split follows the claims in `imap_watch_nodes` (a third, made-up node's claim
//! takes its share away from both, and its mailboxes are watched again once that claim goes
//! stale, as after a crash); a node that stops hands its mailboxes to the other, which then turns
//! a mail client's change in them into an event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use voxmail::domain::{MailboxAddress, MailboxId, now_ms};
use voxmail::service::imap_watch::owner;
use voxmail::store::sql::SqlStore;

use super::api::{CTX, configure, imaplib};
use crate::common::dovecot::TestDovecot;
use crate::common::sse::SseClient;
use crate::common::{TestApp, audio};

/// IMAP users reached through the master login (mailbox number = user name).
const USERS: &[&str] = &["bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
/// `imap.watch_lease_secs` of the test nodes (renewed every second).
const LEASE_SECS: u64 = 3;

fn node(server: &TestDovecot, c: &mut voxmail::config::Config, name: &str) {
    configure(server, c);
    c.node_id = name.into();
    c.imap.watch_lease_secs = LEASE_SECS;
    let ctx = c.imap.contexts.get_mut(CTX).expect("the IMAP context");
    // API connections close at once, so the sessions Dovecot counts are the watchers'.
    ctx.idle_timeout_secs = 1;
}

/// Waits until Dovecot's sessions of `USERS` are exactly `want` (users not in it: none) and stay
/// so for a second; panics with the last count after `within`.
async fn sessions_become(server: &TestDovecot, want: &BTreeMap<String, usize>, within: Duration) {
    let deadline = Instant::now() + within;
    let mut stable_since: Option<Instant> = None;
    loop {
        let got: BTreeMap<String, usize> = tokio::task::block_in_place(|| server.sessions())
            .into_iter()
            .filter(|(u, _)| USERS.contains(&u.as_str()))
            .collect();
        if got == *want {
            let since = *stable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                return;
            }
        } else {
            stable_since = None;
            assert!(
                Instant::now() < deadline,
                "Dovecot's sessions: {got:?}, wanted {want:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn one_each(users: &[&str]) -> BTreeMap<String, usize> {
    users.iter().map(|u| ((*u).to_owned(), 1)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_split_the_watching_and_take_over_from_each_other() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut a = TestApp::spawn_with(|c| node(&server, c, "node-a")).await;
    let url = a.config.database_url();
    let b = TestApp::spawn_with(|c| {
        node(&server, c, "node-b");
        c.database.url = url.clone();
    })
    .await;
    for u in USERS {
        a.create_mailbox(&format!("{u}@{CTX}"), json!({})).await;
    }
    let sql = SqlStore::connect(&url, 2, "/var/spool/asterisk", "test")
        .await
        .expect("the nodes' database");
    let mut ids: BTreeMap<&str, MailboxId> = BTreeMap::new();
    for u in USERS {
        let address: MailboxAddress = format!("{u}@{CTX}").parse().expect("address");
        ids.insert(u, sql.get_mailbox(&address).await.expect("mailbox").id);
    }

    // Both nodes watch: one session per mailbox in all, not two.
    sessions_become(&server, &one_each(USERS), Duration::from_secs(15)).await;

    // A third node claims its share (kept fresh by this test): the mailboxes it would own lose
    // their watcher on both real nodes — so both follow the split — and get one back when the
    // claim goes stale. A name is picked that owns some mailboxes but not all.
    let two = vec!["node-a".to_owned(), "node-b".to_owned()];
    let (ghost, ghosts_share) = (0..50)
        .map(|i| {
            let name = format!("node-ghost-{i}");
            let mut three = two.clone();
            three.push(name.clone());
            let share: Vec<&str> = USERS
                .iter()
                .copied()
                .filter(|u| owner(&three, ids[u]) == Some(name.as_str()))
                .collect();
            (name, share)
        })
        .find(|(_, share)| !share.is_empty() && share.len() < USERS.len())
        .expect("some made-up node name owns part of the mailboxes");
    let rest: Vec<&str> = USERS
        .iter()
        .copied()
        .filter(|u| !ghosts_share.contains(u))
        .collect();
    let claim = {
        let (sql, ghost) = (&sql, ghost.clone());
        async move {
            loop {
                let now = now_ms();
                sql.renew_imap_watch(CTX, &ghost, now, now - 3_000)
                    .await
                    .expect("the made-up node's claim");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let check = async {
        // Give the claim a moment to exist before the nodes' next renewal reads it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        sessions_become(&server, &one_each(&rest), Duration::from_secs(10)).await;
    };
    tokio::select! {
        () = claim => unreachable!("the claim loop never ends"),
        () = check => {}
    }
    // The made-up node "crashed" (stopped renewing without withdrawing): after the lease its
    // mailboxes are watched again.
    let stale_from = Instant::now();
    sessions_become(&server, &one_each(USERS), Duration::from_secs(15)).await;
    eprintln!(
        "a stale claim's mailboxes were watched again after {:?} (lease {LEASE_SECS} s)",
        stale_from.elapsed()
    );

    // A message in one of node-a's mailboxes; then node-a stops: node-b watches everything,
    // and a mail client's change there is an event on node-b.
    let a_box = USERS
        .iter()
        .copied()
        .find(|u| owner(&two, ids[u]) == Some("node-a"));
    let r = b
        .deposit(
            &format!("{}@{CTX}", a_box.unwrap_or(USERS[0])),
            audio::wav_pcm16(1.0, 8000),
            "audio/wav",
            "",
        )
        .await;
    assert_eq!(r.status(), 201);
    a.stop().await;
    let stopped = Instant::now();
    sessions_become(&server, &one_each(USERS), Duration::from_secs(10)).await;
    eprintln!(
        "node-b watched node-a's mailboxes {:?} after node-a stopped",
        stopped.elapsed()
    );
    let user = a_box.unwrap_or(USERS[0]);
    let mut sse = SseClient::connect(
        &b.url(&format!("/v1/events?mailbox={user}@{CTX}")),
        &b.admin,
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    imaplib(
        &server,
        user,
        "m.select('INBOX')\n\
         typ, data = m.uid('SEARCH', None, 'UNDELETED')\n\
         m.uid('STORE', data[0].split()[0], '+FLAGS', '(\\\\Seen)')\n\
         m.logout()\n",
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = sse
            .next(left)
            .await
            .expect("node-b streams the mail client's change within 5 s");
        let v: Value = e.json();
        if v["type"] == "mailbox.changed" {
            assert_eq!(
                (&v["counts"]["new"], &v["counts"]["old"]),
                (&json!(0), &json!(1))
            );
            break;
        }
    }
}
