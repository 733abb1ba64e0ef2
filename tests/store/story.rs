//! The conformance story: every store operation the service uses, in the order a deployment meets
//! them, with the answers every back end must give.

use std::sync::Arc;

use voxmail::domain::{
    AudioFormat, EventFilter, Folder, GreetingKind, MailboxAddress, Role, now_secs,
};
use voxmail::store::{
    ForwardTarget, GreetingRecord, Inserted, MailboxChanges, MessageStore, MwiTargetKind,
    MwiTargetRecord, NewWebhook, PinAttempt, PinPolicy, SqlStore, StoreError,
};

use crate::db::TestDb;
use crate::{new_message, on_every_backend};

on_every_backend!(
    directory_story,
    message_story,
    greeting_story,
    api_key_and_pin_story,
    outbox_consumers_story
);

fn addr(mailbox: &str, context: &str) -> MailboxAddress {
    MailboxAddress::new(mailbox, context).expect("address")
}

fn settings(fullname: &str, email: &str, maxmsg: Option<u32>) -> MailboxChanges {
    MailboxChanges {
        fullname: Some(fullname.into()),
        email: Some(email.into()),
        maxmsg: Some(maxmsg),
        ..MailboxChanges::default()
    }
}

async fn directory_story(store: Arc<SqlStore>, _db: &TestDb) {
    store.create_context("acme", "Acme Inc").await.unwrap();
    store
        .create_context("Acme", "a different tenant")
        .await
        .unwrap();
    assert!(matches!(
        store.create_context("acme", "again").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.get_context("acme").await.unwrap().description,
        "Acme Inc"
    );
    let all = store.list_contexts(None, None, 10).await.unwrap();
    let names: Vec<_> = all.items.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Acme", "acme"], "names compare and sort bytewise");
    let one = store.list_contexts(Some("acme"), None, 10).await.unwrap();
    assert_eq!(one.items.len(), 1);
    let page = store.list_contexts(None, None, 1).await.unwrap();
    assert!(page.has_more);
    let rest = store.list_contexts(None, Some("Acme"), 10).await.unwrap();
    assert_eq!(rest.items[0].name, "acme");

    let a = store
        .create_mailbox(
            &addr("100", "acme"),
            settings("Alice Smith", "alice@example.com", Some(5)),
        )
        .await
        .unwrap();
    assert_eq!(a.maxmsg, Some(5));
    store
        .create_mailbox(
            &addr("101", "acme"),
            settings("Bob 100% Jones", "bob@example.com", None),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_mailbox(&addr("100", "acme"), MailboxChanges::default())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store
            .create_mailbox(&addr("100", "nowhere"), MailboxChanges::default())
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_mailbox(&addr("100", "acme")).await.unwrap().id,
        a.id
    );
    assert!(matches!(
        store.get_mailbox(&addr("100", "ACME")).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.get_mailbox_by_id(a.id).await.unwrap().address,
        a.address
    );

    let search = |q: &'static str| {
        let store = store.clone();
        async move {
            store
                .list_mailboxes(Some("acme"), Some(q), None, 10)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|m| m.address.mailbox)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("10").await, ["100", "101"], "mailbox prefix");
    assert_eq!(search("alice").await, ["100"], "name, any case");
    assert_eq!(search("100%").await, ["101"], "wildcards are literal");
    assert_eq!(search("_").await, Vec::<String>::new());
    let after = store
        .list_mailboxes(None, None, Some(("acme", "100")), 10)
        .await
        .unwrap();
    assert_eq!(after.items.len(), 1);

    let changed = store
        .update_mailbox(
            &addr("100", "acme"),
            MailboxChanges {
                maxmsg: Some(None),
                tz: Some("Europe/Paris".into()),
                ..MailboxChanges::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (changed.maxmsg, changed.tz.as_str()),
        (None, "Europe/Paris")
    );
    assert_eq!(changed.fullname, "Alice Smith");

    let keys = store.delete_mailbox(&addr("101", "acme")).await.unwrap();
    assert!(keys.is_empty());
    assert!(matches!(
        store.get_mailbox(&addr("101", "acme")).await,
        Err(StoreError::NotFound)
    ));
}

async fn message_story(store: Arc<SqlStore>, _db: &TestDb) {
    store.create_context("acme", "").await.unwrap();
    let a = store
        .create_mailbox(&addr("100", "acme"), settings("Alice", "", Some(3)))
        .await
        .unwrap();
    let b = store
        .create_mailbox(&addr("200", "acme"), settings("Bob", "", None))
        .await
        .unwrap();

    let mut ids = Vec::new();
    for n in 0..3 {
        let m = new_message(Folder::Inbox);
        let Inserted::Created(c) = store.insert_message(&a, m.clone(), 3, None).await.unwrap()
        else {
            panic!("a new message")
        };
        assert_eq!(c.value.msgnum, n);
        assert_eq!(c.value.audio_format, AudioFormat::WavUlaw);
        assert_eq!(c.value.caller_id_name, "Alice");
        assert_eq!(c.counts.new, u32::try_from(n + 1).unwrap());
        ids.push(m.id);
    }
    match store
        .insert_message(&a, new_message(Folder::Inbox), 3, None)
        .await
    {
        Err(StoreError::MailboxFull { max: 3, .. }) => {}
        other => panic!("a full mailbox refuses: {other:?}"),
    }

    // Idempotency: the same key answers with the same message, also when the folder is full.
    let first = match store
        .insert_message(&b, new_message(Folder::Inbox), 10, Some("call-1"))
        .await
        .unwrap()
    {
        Inserted::Created(c) => c.value,
        Inserted::Existing(_) => panic!("first use of a key"),
    };
    match store
        .insert_message(&b, new_message(Folder::Inbox), 10, Some("call-1"))
        .await
        .unwrap()
    {
        Inserted::Existing(m) => assert_eq!(m.id, first.id),
        Inserted::Created(_) => panic!("a retry must not store twice"),
    }
    assert_eq!(
        store
            .find_idempotent(&b, "call-1")
            .await
            .unwrap()
            .map(|m| m.id),
        Some(first.id)
    );
    assert!(store.find_idempotent(&b, "CALL-1").await.unwrap().is_none());

    let page = store.list_messages(&a, None, None, 2).await.unwrap();
    assert!(page.has_more);
    assert_eq!(
        page.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[..2]
    );
    let rest = store
        .list_messages(&a, Some(&Folder::Inbox), Some(ids[1]), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        ids[2..]
    );
    assert_eq!(store.get_message(&a, ids[1]).await.unwrap().msgnum, 1);
    assert!(matches!(
        store.get_message(&b, ids[1]).await,
        Err(StoreError::NotFound)
    ));

    // Reading moves to Old and renumbers INBOX (Asterisk's closing of the gap).
    let read = store
        .update_message(&a, ids[0], None, Some(true), 3)
        .await
        .unwrap();
    assert_eq!(
        (read.value.folder.clone(), read.value.msgnum),
        (Folder::Old, 0)
    );
    assert_eq!((read.counts.new, read.counts.old), (2, 1));
    let inbox = store
        .list_messages(&a, Some(&Folder::Inbox), None, 10)
        .await
        .unwrap();
    assert_eq!(
        inbox.items.iter().map(|m| m.msgnum).collect::<Vec<_>>(),
        [0, 1]
    );
    let moved = store
        .update_message(&a, ids[1], Some(Folder::Work), None, 3)
        .await
        .unwrap();
    assert_eq!(moved.value.folder, Folder::Work);
    assert_eq!(store.get_message(&a, ids[2]).await.unwrap().msgnum, 0);

    let copies = store
        .forward_message(
            &a,
            ids[2],
            vec![ForwardTarget {
                mailbox: b.clone(),
                maxmsg: 10,
                message: {
                    let mut m = new_message(Folder::Inbox);
                    m.forwarded_from = Some(ids[2]);
                    m
                },
            }],
            false,
        )
        .await
        .unwrap();
    assert_eq!(copies[0].forwarded_from, Some(ids[2]));
    assert_eq!(copies[0].msgnum, 1);
    assert!(matches!(
        store.get_message(&a, ids[2]).await,
        Err(StoreError::NotFound)
    ));

    let deleted = store.delete_message(&a, ids[0]).await.unwrap();
    assert_eq!(deleted.value.id, ids[0]);
    let counts = store.counts(&a).await.unwrap();
    assert_eq!((counts.new, counts.old), (0, 0));
    let before = counts.version;
    store.delete_message(&a, ids[1]).await.unwrap();
    assert!(store.counts(&a).await.unwrap().version > before);
    let b_counts = store.counts(&b).await.unwrap();
    assert_eq!(b_counts.new, 2);
    assert_eq!(
        store.counts_by_id(b.id).await.unwrap().map(|c| c.new),
        Some(2)
    );

    let keys = store.delete_mailbox(&addr("200", "acme")).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(store.counts_by_id(b.id).await.unwrap().is_none());
}

async fn greeting_story(store: Arc<SqlStore>, _db: &TestDb) {
    store.create_context("acme", "").await.unwrap();
    let a = store
        .create_mailbox(&addr("100", "acme"), MailboxChanges::default())
        .await
        .unwrap();
    let greeting = |key: &str| GreetingRecord {
        mailbox_id: a.id,
        kind: GreetingKind::Unavailable,
        audio_key: key.into(),
        audio_format: AudioFormat::WavPcm,
        sample_rate: 16000,
        channels: 1,
        duration_ms: 2000,
        byte_size: 64_044,
        sha256: "cd".repeat(32),
        updated_at: now_secs(),
        asterisk_recording: None,
    };
    assert_eq!(store.put_greeting(&a, greeting("g1")).await.unwrap(), None);
    assert_eq!(
        store
            .put_greeting(&a, greeting("g2"))
            .await
            .unwrap()
            .as_deref(),
        Some("g1")
    );
    let g = store
        .get_greeting(&a, GreetingKind::Unavailable)
        .await
        .unwrap();
    assert_eq!((g.audio_key.as_str(), g.sample_rate), ("g2", 16000));
    assert!(matches!(
        store.get_greeting(&a, GreetingKind::Busy).await,
        Err(StoreError::NotFound)
    ));
    let gone = store
        .delete_greeting(&a, GreetingKind::Unavailable)
        .await
        .unwrap();
    assert_eq!(gone.audio_key, "g2");
    assert!(matches!(
        store.delete_greeting(&a, GreetingKind::Unavailable).await,
        Err(StoreError::NotFound)
    ));
}

async fn api_key_and_pin_story(store: Arc<SqlStore>, _db: &TestDb) {
    store.create_context("acme", "").await.unwrap();
    let k = store
        .create_api_key("pbx1", Role::Pbx, Some("acme"), "vx_abc", &"e".repeat(64))
        .await
        .unwrap();
    assert!(
        store
            .create_api_key("dup", Role::Admin, None, "vx_def", &"e".repeat(64))
            .await
            .is_err(),
        "token hashes are unique"
    );
    let found = store.find_api_key(&"e".repeat(64)).await.unwrap();
    assert_eq!((found.id, found.context.as_deref()), (k.id, Some("acme")));
    assert!(matches!(
        store.find_api_key(&"E".repeat(64)).await,
        Err(StoreError::NotFound)
    ));
    store.touch_api_key(k.id).await.unwrap();
    assert!(
        store.list_api_keys().await.unwrap()[0]
            .last_used_at
            .is_some()
    );
    let revoked = store.revoke_api_key("vx_abc").await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        store.find_api_key(&"e".repeat(64)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.revoke_api_key("vx_abc").await,
        Err(StoreError::NotFound)
    ));

    let m = store
        .create_mailbox(
            &addr("100", "acme"),
            MailboxChanges {
                pin_hash: Some("$argon2id$fake".into()),
                ..MailboxChanges::default()
            },
        )
        .await
        .unwrap();
    let policy = PinPolicy {
        max_failures: 2,
        window_secs: 600,
        lockout_secs: 300,
    };
    for _ in 0..2 {
        match store.begin_pin_attempt(&m, policy).await.unwrap() {
            PinAttempt::Allowed { pin_hash } => assert_eq!(pin_hash, "$argon2id$fake"),
            PinAttempt::Locked { .. } => panic!("not locked yet"),
        }
    }
    assert!(
        store
            .finish_pin_attempt(&m, false, policy)
            .await
            .unwrap()
            .is_some(),
        "the second failure locks"
    );
    assert!(matches!(
        store.begin_pin_attempt(&m, policy).await.unwrap(),
        PinAttempt::Locked { .. }
    ));
}

async fn outbox_consumers_story(store: Arc<SqlStore>, _db: &TestDb) {
    // Consumers created before anything is configured start at the end of the outbox.
    assert_eq!(store.dispatch_webhook_events(100).await.unwrap(), 0);
    assert_eq!(store.dispatch_mwi_events(100).await.unwrap(), 0);
    store.create_context("acme", "").await.unwrap();
    let a = store
        .create_mailbox(
            &addr("100", "acme"),
            settings("Alice", "alice@example.com", None),
        )
        .await
        .unwrap();
    let hook = store
        .create_webhook(NewWebhook {
            id: "wh1".into(),
            context: "acme".into(),
            url: "http://127.0.0.1:9/hook".into(),
            event_types: vec!["message.deposited".into()],
            secret: "s3cret".into(),
            active: true,
        })
        .await
        .unwrap();
    assert_eq!(store.list_webhooks(Some("acme")).await.unwrap().len(), 1);
    let target = store
        .create_mwi_target(&MwiTargetRecord {
            id: "t1".into(),
            context: "acme".into(),
            kind: MwiTargetKind::Ari,
            url: "http://127.0.0.1:9".into(),
            username: "u".into(),
            secret: "p".into(),
            mailbox: String::new(),
            active: true,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();

    let msg = new_message(Folder::Inbox);
    store
        .insert_message(&a, msg.clone(), 100, None)
        .await
        .unwrap();

    // Events replay: ordered, filtered, and the same from any position.
    let all = store
        .events_after(0, 1000, &EventFilter::default())
        .await
        .unwrap();
    let types: Vec<_> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["mailbox.created", "message.deposited"]);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(all[1].message_id, Some(msg.id));
    assert_eq!(all[1].counts.new, 1);
    assert_eq!(store.last_event_seq().await.unwrap(), all[1].seq);
    assert_eq!(store.first_event_seq().await.unwrap(), Some(all[0].seq));
    let only = EventFilter {
        context: None,
        mailbox: Some(addr("100", "acme")),
    };
    assert_eq!(
        store
            .events_after(all[0].seq, 10, &only)
            .await
            .unwrap()
            .len(),
        1
    );
    let other = EventFilter {
        context: Some("other".into()),
        mailbox: None,
    };
    assert!(store.events_after(0, 10, &other).await.unwrap().is_empty());

    // Webhooks: one delivery per (webhook, event), leased once, with its attempts recorded.
    assert_eq!(store.dispatch_webhook_events(100).await.unwrap(), 2);
    assert_eq!(store.dispatch_webhook_events(100).await.unwrap(), 0);
    let now = chrono_now_ms() + 1;
    let jobs = store.claim_deliveries(now, 30_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].payload.contains(&msg.id.to_string()));
    assert!(
        store
            .claim_deliveries(now, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_attempt(&jobs[0], now, 12, Some(500), Some("boom"), false, Some(now))
        .await
        .unwrap();
    let again = store.claim_deliveries(now + 1, 30_000, 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    store
        .finish_attempt(&again[0], now + 1, 8, Some(204), None, true, None)
        .await
        .unwrap();
    let deliveries = store.list_deliveries(&hook.id, None, 10).await.unwrap();
    assert_eq!(deliveries[0].status, "delivered");
    assert_eq!(deliveries[0].attempts.len(), 2);

    // MWI pushes coalesce per (target, mailbox), leased with a fencing token.
    assert_eq!(store.dispatch_mwi_events(100).await.unwrap(), 2);
    let pushes = store.claim_mwi_pushes(now, 30_000, 10).await.unwrap();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].wanted_version, all[1].counts.version);
    assert!(
        store
            .claim_mwi_pushes(now, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .finish_mwi_push(&pushes[0], Some(pushes[0].wanted_version), None, 0)
        .await
        .unwrap();
    let state = store.list_mwi_pushes(&target.id).await.unwrap();
    assert_eq!(state[0].pushed_version, pushes[0].wanted_version);
    assert_eq!(store.resync_mwi(Some("acme"), None).await.unwrap(), 1);
    let resynced = store.claim_mwi_pushes(now, 30_000, 10).await.unwrap();
    assert_eq!(resynced.len(), 1);
    store.forget_mwi_push(&resynced[0]).await.unwrap();

    // Email jobs: queued in the deposit's transaction, leased once, finished under the lease.
    let jobs = store.claim_email_jobs(now + 10, 30_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].message_id, jobs[0].msgnum), (msg.id, 0));
    assert!(
        store
            .claim_email_jobs(now + 10, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .finish_email_job(&jobs[0], "sent", None, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .finish_email_job(&jobs[0], "sent", None, None)
            .await
            .unwrap()
    );
    assert!(store.email_done_and_sent(msg.id).await.unwrap());
    let state = store.email_state(a.id, msg.id).await.unwrap().unwrap();
    assert_eq!(state.status, "sent");
    assert_eq!(
        store
            .email_states(a.id, msg.id, msg.id)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.sweep_email_jobs(now_secs() + 10).await.unwrap(), 1);

    let mut s = store.context_email_settings("acme").await.unwrap();
    assert!(s.emailsubject.is_none());
    s.emailsubject = Some("New message ${VM_MSGNUM}".into());
    store.put_context_email_settings("acme", &s).await.unwrap();
    store.put_context_email_settings("acme", &s).await.unwrap();
    assert_eq!(
        store
            .context_email_settings("acme")
            .await
            .unwrap()
            .emailsubject,
        s.emailsubject
    );

    store.delete_webhook(&hook.id).await.unwrap();
    store.delete_mwi_target(&target.id).await.unwrap();
    assert_eq!(
        store.sweep(now_secs() + 10, now_secs() + 10).await.unwrap(),
        2
    );
    assert_eq!(store.first_event_seq().await.unwrap(), None);
}

fn chrono_now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis(),
    )
    .expect("ms fit")
}
