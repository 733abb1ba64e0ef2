//! Two-way IMAP: what a mail client we did not write (Python's imaplib) does in the user's
//! mailbox reaches `/v1/events` and an ARI MWI target within 2 s, through the watchers (IDLE, or
//! polling); voxmail's own changes are events too; a stopped server keeps the last known counts
//! (no event, nothing negative) and the watchers recover when it is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::api::{CTX, configure, imaplib};
use crate::common::dovecot::TestDovecot;
use crate::common::receiver::Receiver;
use crate::common::sse::SseClient;
use crate::common::{TestApp, audio};

const MBX: &str = "1234@imapctx";

/// The limit from a mail client's change to the MWI event.
const LIMIT: Duration = Duration::from_secs(2);

/// The mailbox's event stream from its creation on (the mailbox must exist).
async fn events(app: &TestApp) -> SseClient {
    let sse = SseClient::connect(
        &app.url(&format!("/v1/events?mailbox={MBX}")),
        &app.admin,
        Some("0"),
    )
    .await;
    assert_eq!(sse.status, 200);
    sse
}

/// The next event whose counts are `(new, old)`, with how long it took; panics after `wait`,
/// listing what came instead.
async fn counts_event(
    sse: &mut SseClient,
    new: u64,
    old: u64,
    wait: Duration,
) -> (Value, Duration) {
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < wait {
        let Some(m) = sse.next(wait.saturating_sub(start.elapsed())).await else {
            break;
        };
        let v = m.json();
        if v["counts"]["new"] == json!(new) && v["counts"]["old"] == json!(old) {
            return (v, start.elapsed());
        }
        seen.push(v);
    }
    panic!("no event with counts {new}/{old} within {wait:?}; got {seen:#?}");
}

/// Events that arrive within `wait`.
async fn drain(sse: &mut SseClient, wait: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while let Some(m) = sse
        .next(deadline.saturating_duration_since(Instant::now()))
        .await
    {
        out.push(m.json());
    }
    out
}

/// Runs an imaplib command on the INBOX voicemail(s) of alice: `op` is Python with `uids` (all
/// undeleted UIDs of INBOX).
fn on_inbox(server: &TestDovecot, op: &str) {
    let script = format!(
        "m.select('INBOX')\n\
         typ, data = m.uid('SEARCH', None, 'UNDELETED')\n\
         uids = data[0].split()\n\
         assert uids, 'no message in INBOX'\n\
         {op}\n\
         m.logout()\n"
    );
    imaplib(server, "alice", &script, &[]);
}

async fn deposit(app: &TestApp) -> Value {
    let r = app
        .deposit(MBX, audio::wav_pcm16(1.0, 8000), "audio/wav", "")
        .await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

/// The last ARI push for the mailbox says `(new, old)` (waits for it).
async fn ari_says(ari: &Receiver, new: u32, old: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = ari.received().await;
        let last = got
            .iter()
            .rev()
            .find(|r| r.uri.path() == format!("/ari/mailboxes/{MBX}"))
            .and_then(|r| r.uri.query().map(str::to_owned));
        let want = format!("oldMessages={old}&newMessages={new}");
        if last.as_deref() == Some(want.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ARI never got {want}; last push: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mail_client_changes_reach_events_and_ari_within_two_seconds() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(MBX, json!({})).await;
    let ari = Receiver::start().await;
    let r = app
        .post("/v1/mwi-targets")
        .json(&json!({"context": CTX, "kind": "ari", "url": ari.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut sse = events(&app).await;
    let (first, _) = counts_event(&mut sse, 0, 0, Duration::from_secs(10)).await;
    assert_eq!(first["type"], "mailbox.created");

    // voxmail's own change: one event, with the counts read from IMAP.
    let m = deposit(&app).await;
    let (ev, _) = counts_event(&mut sse, 1, 0, LIMIT).await;
    assert_eq!(ev["type"], "message.deposited");
    assert_eq!(ev["message_id"], m["id"]);
    ari_says(&ari, 1, 0).await;
    // The watcher sees the APPEND too, but the counts are the ones recorded: no second event.
    let extra = drain(&mut sse, Duration::from_millis(1500)).await;
    assert!(extra.is_empty(), "{extra:#?}");

    let mut lat = Vec::new();
    // Read in the mail client → 0 new, 1 old.
    on_inbox(&server, "m.uid('STORE', uids[0], '+FLAGS', '(\\\\Seen)')");
    let (ev, t) = counts_event(&mut sse, 0, 1, LIMIT).await;
    assert_eq!(ev["type"], "mailbox.changed");
    assert!(ev["version"].as_i64().unwrap() > 0);
    lat.push(t);
    ari_says(&ari, 0, 1).await;
    // Unread again → 1 new.
    on_inbox(&server, "m.uid('STORE', uids[0], '-FLAGS', '(\\\\Seen)')");
    lat.push(counts_event(&mut sse, 1, 0, LIMIT).await.1);
    // Flagged → urgent.
    on_inbox(
        &server,
        "m.uid('STORE', uids[0], '+FLAGS', '(\\\\Flagged)')",
    );
    let (ev, t) = counts_event(&mut sse, 1, 0, LIMIT).await;
    assert_eq!(ev["counts"]["urgent_new"], 1);
    lat.push(t);
    // Moved to Work in the mail client → INBOX empty.
    imaplib(&server, "alice", "m.create('Work')\n", &[]);
    on_inbox(&server, "m.uid('MOVE', uids[0], 'Work')");
    lat.push(counts_event(&mut sse, 0, 0, LIMIT).await.1);
    ari_says(&ari, 0, 0).await;
    // The REST API sees it in Work.
    let r = app
        .get(&format!("/v1/mailboxes/{MBX}/messages?folder=Work"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "{v}");
    // A second voicemail, deleted and expunged in the mail client.
    deposit(&app).await;
    counts_event(&mut sse, 1, 0, LIMIT).await;
    on_inbox(
        &server,
        "m.uid('STORE', uids[0], '+FLAGS', '(\\\\Deleted)')\nm.expunge()",
    );
    lat.push(counts_event(&mut sse, 0, 0, LIMIT).await.1);
    // Ordinary mail arriving changes no count: no event.
    imaplib(
        &server,
        "alice",
        "m.append('INBOX', None, None, b'From: a@b\\r\\nSubject: hi\\r\\n\\r\\nhello\\r\\n')\n",
        &[],
    );
    let extra = drain(&mut sse, Duration::from_millis(1500)).await;
    assert!(extra.is_empty(), "ordinary mail made events: {extra:#?}");
    let r = app.mwi(MBX).await;
    assert_eq!((r["new"].as_u64(), r["old"].as_u64()), (Some(0), Some(0)));
    eprintln!("mail client change -> event latencies: {lat:?}");
}

#[tokio::test]
async fn polling_watchers_see_mail_client_changes() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        let ctx = c.imap.contexts.get_mut(CTX).unwrap();
        ctx.use_idle = false;
        ctx.poll_interval_secs = 1;
    })
    .await;
    app.create_mailbox(MBX, json!({})).await;
    let mut sse = events(&app).await;
    counts_event(&mut sse, 0, 0, Duration::from_secs(10)).await;
    deposit(&app).await;
    counts_event(&mut sse, 1, 0, LIMIT).await;
    on_inbox(&server, "m.uid('STORE', uids[0], '+FLAGS', '(\\\\Seen)')");
    let (ev, _) = counts_event(&mut sse, 0, 1, LIMIT).await;
    assert_eq!(ev["type"], "mailbox.changed");
}

#[tokio::test]
async fn a_stopped_server_keeps_the_last_counts_and_watchers_recover() {
    let Some(mut server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(MBX, json!({})).await;
    let ari = Receiver::start().await;
    let r = app
        .post("/v1/mwi-targets")
        .json(&json!({"context": CTX, "kind": "ari", "url": ari.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut sse = events(&app).await;
    counts_event(&mut sse, 0, 0, Duration::from_secs(10)).await;
    deposit(&app).await;
    counts_event(&mut sse, 1, 0, LIMIT).await;
    ari_says(&ari, 1, 0).await;

    server.stop();
    // Nothing is guessed while the server is away: no event, and a resync pushes the last
    // known counts.
    let during = drain(&mut sse, Duration::from_secs(3)).await;
    assert!(during.is_empty(), "events while IMAP was down: {during:#?}");
    let r = app
        .post("/v1/mwi/resync")
        .json(&json!({"context": CTX}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let before = ari.received().await.len();
    let got = ari.wait_for(before + 1, Duration::from_secs(5)).await;
    let last = got.last().unwrap();
    assert_eq!(
        last.uri.query(),
        Some("oldMessages=0&newMessages=1"),
        "the resync during the outage pushed the last known counts"
    );

    server.restart();
    // The watcher reconnects (backoff ≤ 8 s here) and sees what the mail client does, whether
    // the change is made before it is back (its first look on reconnecting reads the counts) or
    // after (IDLE).
    on_inbox(&server, "m.uid('STORE', uids[0], '+FLAGS', '(\\\\Seen)')");
    let (ev, t) = counts_event(&mut sse, 0, 1, Duration::from_secs(20)).await;
    assert_eq!(ev["type"], "mailbox.changed");
    eprintln!("recovered after {t:?}");
    ari_says(&ari, 0, 1).await;
}

/// A deposit into an IMAP mailbox is e-mailed like any other (Asterisk's `notify_new_message`
/// sends the notification with IMAP storage too): the recording comes from the IMAP attachment.
#[tokio::test]
async fn an_imap_deposit_is_emailed_with_its_recording() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let Some(smtp) = crate::common::smtp::SmtpServer::start().await else {
        return;
    };
    let port = smtp.port;
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        c.email.host = "127.0.0.1".into();
        c.email.port = port;
        c.email.timeout_secs = 5;
        c.email.serveremail = "vm@pbx.example.org".into();
    })
    .await;
    app.create_mailbox(
        MBX,
        json!({"fullname": "Alice", "email": "alice@example.org", "attach": true, "attachfmt": "wav"}),
    )
    .await;
    let r = app
        .deposit(MBX, audio::wav_pcm16(1.5, 8000), "audio/wav", "")
        .await;
    assert_eq!(r.status(), 201);
    let mails = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1, "one notification e-mail");
    assert_eq!(mails[0].rcpt_tos, vec!["alice@example.org".to_owned()]);
    let p = smtp.parse(&mails[0]);
    let h = &p["headers"];
    assert_eq!(h["x-asterisk-vm-extension"], "1234");
    assert_eq!(h["x-asterisk-vm-context"], CTX);
    let parts = p["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{p}");
    assert_eq!(parts[1]["filename"], "msg0000.wav");
    let secs = crate::common::smtp::audio_duration(std::path::Path::new(
        parts[1]["path"].as_str().unwrap(),
    ));
    assert!((secs - 1.5).abs() < 0.05, "attachment lasts {secs} s");
}

/// A forward from an IMAP mailbox into another IMAP mailbox is mailed as Asterisk mails a
/// forward: the forwarding mailbox is the caller (`VM_CIDNUM`), the original caller is
/// `ORIG_VM_*`; and the target gets its event.
#[tokio::test]
async fn a_forward_into_an_imap_mailbox_is_mailed_as_a_forward() {
    forward_from_imap_is_mailed_as_a_forward("bob@imapctx").await;
}

/// The same into a mailbox kept in SQL (another context): the copy is stored like a deposit of
/// the IMAP attachment, and still mailed as a forward.
#[tokio::test]
async fn a_forward_from_imap_into_sql_is_mailed_as_a_forward() {
    forward_from_imap_is_mailed_as_a_forward("2000@default").await;
}

async fn forward_from_imap_is_mailed_as_a_forward(target: &str) {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let Some(smtp) = crate::common::smtp::SmtpServer::start().await else {
        return;
    };
    let port = smtp.port;
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        c.email.host = "127.0.0.1".into();
        c.email.port = port;
        c.email.timeout_secs = 5;
        c.email.serveremail = "vm@pbx.example.org".into();
        c.email.emailsubject = "${VM_MSGNUM} via ${VM_CIDNUM} from ${ORIG_VM_CIDNUM}".into();
    })
    .await;
    // 1234 logs in as alice; "bob" through the master user as IMAP user bob.
    app.create_mailbox(MBX, json!({"fullname": "Alice"})).await;
    app.create_mailbox(
        target,
        json!({"fullname": "Bob", "email": "bob@example.org", "attach": true}),
    )
    .await;
    let m = app
        .deposit_ok(MBX, audio::wav_pcm16(1.0, 8000), "audio/wav")
        .await;
    let mut bob_events = SseClient::connect(
        &app.url(&format!("/v1/events?mailbox={target}")),
        &app.admin,
        None,
    )
    .await;
    let r = app
        .post(&format!(
            "/v1/mailboxes/{MBX}/messages/{}/forward",
            m["id"].as_str().unwrap()
        ))
        .json(&json!({"to": [target], "keep": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let (ev, _) = counts_event(&mut bob_events, 1, 0, LIMIT).await;
    assert_eq!(ev["type"], "message.deposited");
    let mails = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_tos, vec!["bob@example.org".to_owned()]);
    let p = smtp.parse(&mails[0]);
    let subject = p["headers"]["subject"].as_str().unwrap().to_owned();
    assert!(subject.starts_with("1 via 1234 from"), "{subject}");
    assert_eq!(p["parts"][1]["filename"], "msg0000.wav");
}
