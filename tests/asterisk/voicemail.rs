//! A real Asterisk 22 (app_voicemail, ODBC_STORAGE) and a voxmail node on one database —
//! PostgreSQL and MariaDB — sharing mailbox 1001@default both ways: Asterisk's `VoiceMail()`
//! deposits show up in voxmail with their events, a REST deposit and greeting play in
//! `VoiceMailMain()`/`VoiceMail()` without a playback failure, Asterisk's save to Old after
//! listening keeps the message (same id, `message.moved`) and its delete is voxmail's delete.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::asterisk::{Asterisk, AsteriskConfig};
use crate::common::db::{Backend, TestDb};
use crate::common::sse::SseClient;
use crate::common::{TestApp, fixture};
use crate::statements::{messages, next_event};

/// voicemail.conf of the Asterisk nodes: `odbctable` is voxmail's view of Asterisk's columns,
/// the first format is the one the context names in voxmail (`wav49`).
pub const VOICEMAIL_CONF: &str = "[general]
format = wav49|gsm|wav
odbcstorage = asterisk
odbctable = voicemessages

[default]
1001 => 1234,Alice
";

/// The caller side (`;2` of a Local channel) and the voicemail side (`;1`). A deposit: the
/// greeting plays while the caller waits, then the caller speaks (a prompt) and hangs up, which
/// ends the recording. Listening: `1` plays the first new message; `listen-delete` presses `7`
/// while it plays, which deletes it.
pub const EXTENSIONS_CONF: &str = "[caller]
exten => deposit,1,Answer()
 same => n,Wait(8)
 same => n,Playback(vm-tocallback)
 same => n,Hangup()

exten => listen,1,Answer()
 same => n,Wait(1)
 same => n,SendDTMF(1)
 same => n,Wait(60)
 same => n,Hangup()

exten => listen-delete,1,Answer()
 same => n,Wait(1)
 same => n,SendDTMF(1)
 same => n,Wait(3)
 same => n,SendDTMF(7)
 same => n,Wait(3)
 same => n,Hangup()

; Log in with the PIN voxmail set, then 0 (mailbox options), 5 (change password), 5678# twice.
exten => change-pin,1,Answer()
 same => n,Wait(2)
 same => n,SendDTMF(1234#)
 same => n,Wait(4)
 same => n,SendDTMF(0)
 same => n,Wait(2)
 same => n,SendDTMF(5)
 same => n,Wait(2)
 same => n,SendDTMF(5678#)
 same => n,Wait(2)
 same => n,SendDTMF(5678#)
 same => n,Wait(4)
 same => n,Hangup()

; Log in, 0 (mailbox options), 1 (record the unavailable greeting), speak, # ends it, 1 accepts.
exten => record-greeting,1,Answer()
 same => n,Wait(2)
 same => n,SendDTMF(1234#)
 same => n,Wait(4)
 same => n,SendDTMF(0)
 same => n,Wait(2)
 same => n,SendDTMF(1)
 same => n,Wait(5)
 same => n,Playback(vm-tocallback)
 same => n,SendDTMF(#)
 same => n,Wait(3)
 same => n,SendDTMF(1)
 same => n,Wait(3)
 same => n,Hangup()

exten => login-5678,1,Answer()
 same => n,Wait(2)
 same => n,SendDTMF(5678#)
 same => n,Wait(6)
 same => n,Hangup()

[vm]
exten => 1001,1,VoiceMail(1001@default,u)
 same => n,Hangup()

exten => main,1,VoiceMailMain(1001@default,s)
 same => n,Hangup()

exten => login,1,VoiceMailMain(1001@default)
 same => n,Hangup()
";

/// voicemail.conf of nodes that read their mailboxes from voxmail (realtime, extconfig.conf).
pub const REALTIME_VOICEMAIL_CONF: &str = "[general]
format = wav49|gsm|wav
odbcstorage = asterisk
odbctable = voicemessages
";

/// extconfig.conf: Asterisk's realtime `voicemail` users are voxmail's mailboxes.
pub const EXTCONFIG_CONF: &str = "[settings]
voicemail => odbc,asterisk,mailboxes
";

const CALL: Duration = Duration::from_secs(60);
const EVENT: Duration = Duration::from_secs(10);

/// The `NewMsg` column of mailbox 1001 in `voicemail show users`.
fn asterisk_new(ast: &Asterisk) -> u32 {
    let out = ast.rx("voicemail show users for default");
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some("1001"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no mailbox 1001 in `voicemail show users`:\n{out}"))
}

/// Runs blocking harness work (calls, log waits) off the runtime that serves voxmail.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// An Asterisk and a voxmail on one fresh database of `backend`, mailbox 1001@default known to
/// both, the context's Asterisk format set.
pub async fn asterisk_and_voxmail(backend: Backend) -> Option<(std::sync::Arc<Asterisk>, TestApp)> {
    asterisk_and_voxmail_with(backend, VOICEMAIL_CONF, None, json!({"format": "wav49"})).await
}

/// As [`asterisk_and_voxmail`], with this voicemail.conf, extconfig.conf and context settings.
pub async fn asterisk_and_voxmail_with(
    backend: Backend,
    voicemail_conf: &str,
    extconfig_conf: Option<&str>,
    settings: Value,
) -> Option<(std::sync::Arc<Asterisk>, TestApp)> {
    let db = TestDb::create(backend).await?;
    // voxmail's schema first: Asterisk counts messages as soon as it starts.
    voxmail::store::SqlStore::connect(&db.url, 1, "/var/spool/asterisk", "migrate")
        .await
        .unwrap()
        .close()
        .await;
    let mut config = AsteriskConfig::for_db(&db, voicemail_conf, EXTENSIONS_CONF);
    config.extconfig_conf = extconfig_conf.map(str::to_owned);
    let ast = Asterisk::start(config)?;
    let spool = ast.spool_dir().display().to_string();
    let app = TestApp::spawn_with_db(Some(db), |c| c.voicemail.spool_dir = spool).await;
    app.create_context("default").await;
    let r = app
        .put("/v1/contexts/default/asterisk")
        .json(&settings)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.create_mailbox("1001@default", json!({"pin": "1234"}))
        .await;
    Some((std::sync::Arc::new(ast), app))
}

async fn asterisk_and_voxmail_share_a_mailbox(backend: Backend) {
    let Some((ast, app)) = asterisk_and_voxmail(backend).await else {
        return;
    };
    let mut sse = SseClient::connect(&app.url("/v1/events"), &app.admin, None).await;
    let inbox = ast.odbc_dir("default", "1001", "INBOX");

    // A greeting uploaded to voxmail is what Asterisk's callers hear.
    let r = app
        .put("/v1/mailboxes/1001@default/greetings/unavailable")
        .header("content-type", "audio/wav")
        .body(fixture("hello-pcm16.wav"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    next_event(&mut sse, "greeting.changed", EVENT).await;

    // A REST deposit: Asterisk counts it.
    let rest = app
        .deposit_ok("1001@default", fixture("hello-ulaw.wav"), "audio/wav")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    next_event(&mut sse, "message.deposited", EVENT).await;
    let a = ast.clone();
    assert_eq!(blocking(move || asterisk_new(&a)).await, 1);

    // A caller leaves a message with Asterisk: voxmail lists it, serves it, counts it.
    let mark = ast.log_mark();
    let a = ast.clone();
    blocking(move || a.call("deposit@caller", "1001@vm", CALL)).await;
    let greeting = format!("Playing '{}.", ast.odbc_dir("default", "1001", "unavail"));
    assert!(
        ast.log_since(mark).contains(&greeting),
        "voxmail's greeting was not played:\n{}",
        ast.log_since(mark)
    );
    let (ev, took) = next_event(&mut sse, "message.deposited", EVENT).await;
    eprintln!("{backend:?}: Asterisk's deposit -> message.deposited {took:?} after the call ended");
    let recorded = ev["message_id"].as_str().unwrap().to_owned();
    assert_eq!(ev["counts"]["new"], 2);
    let msgs = messages(&app, "1001@default").await;
    let m = msgs.iter().find(|m| m["id"] == recorded.as_str()).unwrap();
    assert_eq!(m["folder"], "INBOX");
    assert_eq!(m["msgnum"], 1);
    assert_eq!(m["audio"]["format"], "wav_gsm");
    let audio = app
        .get(&format!(
            "/v1/mailboxes/1001@default/messages/{recorded}/audio?format=wav"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert!(audio.bytes().await.unwrap().len() > 16_000);

    // Listening in VoiceMailMain plays the REST deposit (msg0000, WAV49 made by voxmail) without
    // a playback failure; hanging up saves it to Old — voxmail keeps its id.
    let mark = ast.log_mark();
    ast.originate("listen@caller", "main@vm");
    let playing = format!("Playing '{inbox}/msg0000.");
    let a = ast.clone();
    let played = blocking(move || {
        a.wait_for_log_since(mark, &playing, CALL)
            && a.wait_for_log_since(mark, "Playing 'vm-advopts.", CALL)
    })
    .await;
    assert!(
        played,
        "the REST deposit was not played:\n{}",
        ast.log_since(mark)
    );
    let a = ast.clone();
    blocking(move || {
        a.hangup_all();
        a.wait_idle(CALL)
    })
    .await;
    let (ev, _) = next_event(&mut sse, "message.moved", EVENT).await;
    assert_eq!(ev["message_id"], rest.as_str());
    assert_eq!(ev["counts"]["new"], 1);
    assert_eq!(ev["counts"]["old"], 1);
    let msgs = messages(&app, "1001@default").await;
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let heard = msgs.iter().find(|m| m["id"] == rest.as_str()).unwrap();
    assert_eq!(heard["folder"], "Old");
    let audio = app
        .get(&format!("/v1/mailboxes/1001@default/messages/{rest}/audio"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        audio.bytes().await.unwrap().as_ref(),
        fixture("hello-ulaw.wav").as_slice(),
        "the original stays byte-exact"
    );
    let a = ast.clone();
    assert_eq!(blocking(move || asterisk_new(&a)).await, 1);

    // Deleting in VoiceMailMain (7 while the message plays) is voxmail's delete.
    let a = ast.clone();
    blocking(move || a.call("listen-delete@caller", "main@vm", CALL)).await;
    let (ev, _) = next_event(&mut sse, "message.deleted", EVENT).await;
    assert_eq!(ev["message_id"], recorded.as_str());
    assert_eq!(ev["counts"]["new"], 0);
    let msgs = messages(&app, "1001@default").await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let a = ast.clone();
    assert_eq!(blocking(move || asterisk_new(&a)).await, 0);

    // A greeting recorded in VoiceMailMain is voxmail's unavailable greeting.
    let a = ast.clone();
    blocking(move || a.call("record-greeting@caller", "login@vm", CALL)).await;
    next_event(&mut sse, "greeting.changed", EVENT).await;
    let g: Value = app
        .get("/v1/mailboxes/1001@default/greetings/unavailable")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["audio"]["format"], "wav_gsm", "{g}");
    assert!(g["duration_ms"].as_i64().unwrap() >= 2000, "{g}");

    let unexpected = ast.unexpected_warnings();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    for bad in [
        "Playback of message",
        "Unexpected header",
        "Failed to store",
    ] {
        assert!(!ast.log().contains(bad), "{bad}:\n{}", ast.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_and_voxmail_share_a_mailbox_postgres() {
    asterisk_and_voxmail_share_a_mailbox(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_and_voxmail_share_a_mailbox_mariadb() {
    asterisk_and_voxmail_share_a_mailbox(Backend::MySql).await;
}

async fn pins_are_shared_with_voicemailmain(backend: Backend) {
    let Some((ast, app)) = asterisk_and_voxmail_with(
        backend,
        REALTIME_VOICEMAIL_CONF,
        Some(EXTCONFIG_CONF),
        json!({"format": "wav49", "pins": "plain"}),
    )
    .await
    else {
        return;
    };
    // The PIN set in voxmail logs in; the PIN changed in VoiceMailMain is the one voxmail checks.
    let mark = ast.log_mark();
    let a = ast.clone();
    let changed = blocking(move || {
        a.originate("change-pin@caller", "login@vm");
        a.wait_for_log_since(mark, "Playing 'vm-passchanged.", CALL)
    })
    .await;
    assert!(changed, "no PIN change:\n{}", ast.log_since(mark));
    assert!(
        !ast.log_since(mark).contains("Incorrect password"),
        "{}",
        ast.log_since(mark)
    );
    let a = ast.clone();
    blocking(move || a.wait_idle(CALL)).await;
    let r = app
        .post("/v1/mailboxes/1001@default/pin/verify")
        .json(&json!({"pin": "5678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // And Asterisk logs in with it again.
    let mark = ast.log_mark();
    let a = ast.clone();
    let logged_in = blocking(move || {
        a.originate("login-5678@caller", "login@vm");
        a.wait_for_log_since(mark, "Playing 'vm-youhave.", CALL)
    })
    .await;
    assert!(logged_in, "no login with 5678:\n{}", ast.log_since(mark));
    assert!(!ast.log_since(mark).contains("Incorrect password"));
    let a = ast.clone();
    blocking(move || a.wait_idle(CALL)).await;
    let unexpected = ast.unexpected_warnings();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_shared_with_voicemailmain_postgres() {
    pins_are_shared_with_voicemailmain(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_shared_with_voicemailmain_mariadb() {
    pins_are_shared_with_voicemailmain(Backend::MySql).await;
}
