//! The REST API over a context whose messages are kept in IMAP (`[imap.contexts.<name>]`),
//! against a private Dovecot, checked with a mail client we did not write (Python's imaplib)
//! and ffmpeg.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxmail::config::{Config, ImapContextConfig, ImapMailboxLogin};

use crate::common::dovecot::{MASTER_PASSWORD, MASTER_USER, TestDovecot};
use crate::common::{TestApp, assert_problem, audio};

pub(crate) const CTX: &str = "imapctx";
const MBX: &str = "1234@imapctx";

/// Alice's mailbox 1234 logs in as alice; every other mailbox of the context through the
/// master user (`<mailbox>*master`, so mailbox "bob" is IMAP user bob).
pub(crate) fn configure(server: &TestDovecot, c: &mut Config) {
    let mut ctx = ImapContextConfig {
        host: server.host.clone(),
        port: server.port,
        tls: voxmail::config::ImapTlsMode::None,
        master_user: MASTER_USER.into(),
        master_password: MASTER_PASSWORD.into(),
        timeout_secs: 5,
        retry_after_secs: 7,
        ..ImapContextConfig::default()
    };
    ctx.mailboxes.insert(
        "1234".into(),
        ImapMailboxLogin {
            user: "alice".into(),
            password: TestDovecot::password("alice").into(),
            ..ImapMailboxLogin::default()
        },
    );
    c.imap.contexts.insert(CTX.into(), ctx);
}

/// Runs a Python imaplib script as `user` with argv[1..5] = host port user password, then
/// `extra`; returns stdout.
pub(crate) fn imaplib(server: &TestDovecot, user: &str, script: &str, extra: &[&str]) -> String {
    let prelude = "import imaplib, sys, email\n\
        m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))\n\
        m.login(sys.argv[3], sys.argv[4])\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .arg(&server.host)
        .arg(server.port.to_string())
        .arg(user)
        .arg(TestDovecot::password(user))
        .args(extra)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "imaplib script failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every undeleted message of alice's INBOX as imaplib sees it: one line per message with its
/// flags, subject, `X-Voxmail-Message-Id` and attachments (saved into `dir`).
fn inbox(server: &TestDovecot, dir: &std::path::Path) -> Vec<String> {
    let script = "m.select('INBOX', readonly=True)\n\
        typ, data = m.uid('SEARCH', None, 'UNDELETED')\n\
        for uid in data[0].split():\n\
        \x20   typ, d = m.uid('FETCH', uid, '(FLAGS BODY.PEEK[])')\n\
        \x20   flags = ' '.join(sorted(f.decode() for f in imaplib.ParseFlags(d[0][0]) if f != b'\\\\Recent'))\n\
        \x20   msg = email.message_from_bytes(d[0][1])\n\
        \x20   names = []\n\
        \x20   for part in msg.walk():\n\
        \x20       if part.get_filename():\n\
        \x20           names.append(part.get_filename() + ' ' + part.get_content_type())\n\
        \x20           open(sys.argv[5] + '/' + part.get_filename(), 'wb').write(part.get_payload(decode=True))\n\
        \x20   print(f\"{flags}|{msg['Subject']}|{msg['X-Voxmail-Message-Id']}|{','.join(names)}\")\n";
    imaplib(server, "alice", script, &[dir.to_str().unwrap()])
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn ffmpeg_decodes(path: &std::path::Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg cannot decode {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) async fn json_ok(r: reqwest::Response, want: StatusCode) -> Value {
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, want, "{body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

async fn list(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/mailboxes/{MBX}/messages{query}"))
        .send()
        .await
        .unwrap();
    json_ok(r, StatusCode::OK).await["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn mwi(app: &TestApp) -> (u64, u64) {
    let r = app
        .get(&format!("/v1/mailboxes/{MBX}/mwi"))
        .send()
        .await
        .unwrap();
    let v = json_ok(r, StatusCode::OK).await;
    (v["new"].as_u64().unwrap(), v["old"].as_u64().unwrap())
}

/// Deposit through the REST API → an ordinary email in alice's INBOX with a playable
/// `msg0000.wav`; the Idempotency-Key finds it again; list, get, audio, mark read, MWI and
/// delete map to IMAP (forward, renditions and attachfmt: tests/imap/store_ops.rs).
#[tokio::test]
async fn rest_api_over_an_imap_context() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(MBX, json!({"fullname": "Alice"})).await;
    let wav = audio::wav_pcm16(1.5, 8000);
    let deposit = || {
        app.post(&format!(
            "/v1/mailboxes/{MBX}/messages?caller_id_num=5551234&caller_id_name=Bob"
        ))
        .header("content-type", "audio/wav")
        .header("idempotency-key", "call-imap-0001")
        .body(wav.clone())
        .send()
    };
    let first = json_ok(deposit().await.unwrap(), StatusCode::CREATED).await;
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["folder"], "INBOX", "{first}");
    // A retry with the same key finds the message in IMAP and appends nothing.
    let r = deposit().await.unwrap();
    assert!(r.status().is_success(), "retry: {}", r.status());
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], id.as_str());

    let dir = tempfile::tempdir().unwrap();
    let seen = inbox(&server, dir.path());
    assert_eq!(seen.len(), 1, "{seen:?}");
    let parts: Vec<&str> = seen[0].split('|').collect();
    assert_eq!(parts[0], "", "unread, not urgent: {seen:?}");
    assert_eq!(parts[1], "[PBX]: New message 1 in mailbox 1234");
    assert_eq!(parts[2], id);
    assert_eq!(parts[3], "msg0000.wav audio/x-wav");
    let saved = dir.path().join("msg0000.wav");
    assert_eq!(std::fs::read(&saved).unwrap(), wav);
    ffmpeg_decodes(&saved);

    // List, get, audio.
    let items = list(&app, "").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["caller_id_num"], "5551234", "{}", items[0]);
    assert_eq!(list(&app, "?folder=Old").await.len(), 0);
    let path = format!("/v1/mailboxes/{MBX}/messages/{id}");
    let got = json_ok(app.get(&path).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(got["id"], id.as_str());
    let r = app.get(&format!("{path}/audio")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), wav);
    let r = app
        .get(&format!("{path}/audio"))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"RIFF");
    assert_eq!(mwi(&app).await, (1, 0));

    // Mark read: \Seen in IMAP, Old in the API, counted old.
    let r = app
        .patch(&path)
        .json(&json!({"read": true}))
        .send()
        .await
        .unwrap();
    let read = json_ok(r, StatusCode::OK).await;
    assert_eq!(read["folder"], "Old", "{read}");
    assert_eq!(mwi(&app).await, (0, 1));
    assert!(inbox(&server, dir.path())[0].starts_with("\\Seen|"));

    // Delete: gone from IMAP.
    let r = app.delete(&path).send().await.unwrap();
    assert!(r.status().is_success(), "delete: {}", r.status());
    assert!(inbox(&server, dir.path()).is_empty());
    assert!(list(&app, "").await.is_empty());
    assert_eq!(mwi(&app).await, (0, 0));
    let r = app.get(&path).send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
}

/// A stopped IMAP server: 503 imap-unavailable with the configured Retry-After for deposit,
/// list and MWI; nothing is stored anywhere.
#[tokio::test]
async fn imap_server_down_is_503_with_retry_after() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(MBX, json!({})).await;
    drop(server);
    // The listener goes with the master process.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = app
            .get(&format!("/v1/mailboxes/{MBX}/mwi"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.headers()["retry-after"], "7");
            assert_problem(r, 503, "imap-unavailable").await;
            break;
        }
        assert!(Instant::now() < deadline, "still answering: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = app
        .deposit(MBX, audio::wav_pcm16(1.0, 8000), "audio/wav", "")
        .await;
    assert_eq!(r.headers()["retry-after"], "7");
    assert_problem(r, 503, "imap-unavailable").await;
    let r = app
        .get(&format!("/v1/mailboxes/{MBX}/messages"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 503, "imap-unavailable").await;
    // The deposit's audio did not stay behind in the audio store.
    let audio_dir = app.data_dir().join("audio");
    let mut files = Vec::new();
    if audio_dir.exists() {
        for e in walk(&audio_dir) {
            files.push(e);
        }
    }
    assert!(files.is_empty(), "audio left behind: {files:?}");
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The master-user login reaches a mailbox with no login of its own.
#[tokio::test]
async fn master_user_login_serves_other_mailboxes() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox("bob@imapctx", json!({})).await;
    let m = app
        .deposit_ok("bob@imapctx", audio::wav_pcm16(1.0, 8000), "audio/wav")
        .await;
    let r = app
        .get("/v1/mailboxes/bob@imapctx/messages")
        .send()
        .await
        .unwrap();
    let v = json_ok(r, StatusCode::OK).await;
    assert_eq!(v["items"][0]["id"], m["id"]);
    let out = imaplib(
        &server,
        "bob",
        "m.select('INBOX', readonly=True)\nprint(m.search(None, 'ALL')[1][0].decode())\n",
        &[],
    );
    assert_eq!(out.trim(), "1");
    let _ = CTX;
}

/// A message Asterisk wrote (fixtures/imap) is listed, described and played through the REST
/// API under an id that survives a move; a move and a delete through the API are what a mail
/// client sees; ordinary mail in the same INBOX is left alone.
#[tokio::test]
async fn asterisk_written_voicemail_through_the_rest_api() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        let mut ctx = c.imap.contexts[CTX].clone();
        ctx.mailboxes.clear();
        ctx.user_format = "alice".into();
        c.imap.contexts.insert("default".into(), ctx);
    })
    .await;
    app.create_mailbox("1234@default", json!({})).await;
    let eml = crate::common::fixture("imap/asterisk-wav49.eml");
    let dir = tempfile::tempdir().unwrap();
    let eml_path = dir.path().join("vm.eml");
    std::fs::write(&eml_path, &eml).unwrap();
    let count = |folder: &str| -> String {
        imaplib(
            &server,
            "alice",
            &format!(
                "typ, d = m.select('{folder}', readonly=True)\n\
                 print(m.search(None, 'UNDELETED')[1][0].decode() if typ == 'OK' else 'none')\n"
            ),
            &[],
        )
        .trim()
        .to_owned()
    };
    imaplib(
        &server,
        "alice",
        "m.append('INBOX', None, None, open(sys.argv[5], 'rb').read())\n\
         m.append('INBOX', None, None, b'From: a@example.org\\r\\nSubject: lunch\\r\\n\\r\\nplain mail\\r\\n')\n",
        &[eml_path.to_str().unwrap()],
    );
    assert_eq!(count("INBOX"), "1 2");
    let base = "/v1/mailboxes/1234@default/messages";
    let listed = json_ok(app.get(base).send().await.unwrap(), StatusCode::OK).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the voicemail: {listed}");
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let path = format!("{base}/{id}");
    let got = json_ok(app.get(&path).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(got["audio"]["format"], "wav_gsm", "{got}");
    let want = voxmail::imap::parse(&eml).unwrap().audio.unwrap().data;
    let r = app.get(&format!("{path}/audio")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), want);

    // Move to Work: a real folder in IMAP, same id in the API.
    let r = app
        .patch(&path)
        .json(&json!({"folder": "Work"}))
        .send()
        .await
        .unwrap();
    let moved = json_ok(r, StatusCode::OK).await;
    assert_eq!(moved["folder"], "Work", "{moved}");
    assert_eq!(moved["id"], id.as_str());
    assert_eq!(count("Work"), "1");
    assert_eq!(count("INBOX"), "1", "the plain mail stays");
    let work = json_ok(
        app.get(&format!("{base}?folder=Work"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(work["items"][0]["id"], id.as_str());

    // Delete: gone from Work; the plain mail is untouched.
    let r = app.delete(&path).send().await.unwrap();
    assert!(r.status().is_success(), "delete: {}", r.status());
    assert_eq!(count("Work"), "");
    assert_eq!(count("INBOX"), "1");
}

/// `store` per mailbox: in a context kept in SQL, mailbox 1234 (alice's login) keeps its
/// messages in IMAP and 5678 stays in SQL.
#[tokio::test]
async fn one_mailbox_in_imap_in_a_context_kept_in_sql() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        let ctx = c.imap.contexts.get_mut(CTX).unwrap();
        ctx.store = voxmail::config::KeptIn::Sql;
        ctx.master_user.clear();
        ctx.master_password.clear();
        ctx.mailboxes.get_mut("1234").unwrap().store = voxmail::config::MailboxKeptIn::Imap;
    })
    .await;
    app.create_mailbox(MBX, json!({})).await;
    app.create_mailbox("5678@imapctx", json!({})).await;
    let wav = audio::wav_pcm16(1.0, 8000);
    let r = app.deposit(MBX, wav.clone(), "audio/wav", "").await;
    let in_imap = json_ok(r, StatusCode::CREATED).await;
    let r = app.deposit("5678@imapctx", wav, "audio/wav", "").await;
    let in_sql = json_ok(r, StatusCode::CREATED).await;
    let dir = tempfile::tempdir().unwrap();
    let seen = inbox(&server, dir.path());
    assert_eq!(seen.len(), 1, "only 1234's message is in IMAP: {seen:?}");
    assert!(
        seen[0].contains(in_imap["id"].as_str().unwrap()),
        "{seen:?}"
    );
    let r = app
        .get("/v1/mailboxes/5678@imapctx/messages")
        .send()
        .await
        .unwrap();
    let v = json_ok(r, StatusCode::OK).await;
    assert_eq!(v["items"][0]["id"], in_sql["id"]);
    assert_eq!(mwi(&app).await, (1, 0));
}

/// Two nodes (two servers on one database) and six simultaneous tries of one deposit with one
/// Idempotency-Key: one message in IMAP, and every try answers with it. Each node's own lock
/// cannot see the other's try; the key's claim in SQL does.
#[tokio::test]
async fn one_idempotency_key_on_two_nodes_appends_once() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let a = TestApp::spawn_with(|c| configure(&server, c)).await;
    let url = a.config.database_url();
    let b = TestApp::spawn_with(|c| {
        configure(&server, c);
        c.database.url = url;
    })
    .await;
    a.create_mailbox(MBX, json!({})).await;
    // Both nodes' connection pools warm (so both tries start at once), and a long recording (a
    // slow APPEND): without the claim, both nodes find no message with the key and append.
    for app in [&a, &b] {
        let r = app
            .deposit(MBX, audio::wav_pcm16(0.5, 8000), "audio/wav", "")
            .await;
        assert_eq!(r.status(), 201);
    }
    let wav = audio::wav_pcm16(120.0, 8000);
    let tries = (0..6).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.post(&format!("/v1/mailboxes/{MBX}/messages"))
            .header("content-type", "audio/wav")
            .header("idempotency-key", "call-two-nodes")
            .body(wav.clone())
            .send()
    });
    let answers = futures_util::future::join_all(tries).await;
    let mut ids = std::collections::BTreeSet::new();
    for r in answers {
        let r = r.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let v: Value = r.json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        ids.len(),
        1,
        "every try answers with the one message: {ids:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let seen = inbox(&server, dir.path());
    let with_id: Vec<&String> = ids.iter().collect();
    assert_eq!(
        seen.iter()
            .filter(|l| l.contains(with_id[0].as_str()))
            .count(),
        1,
        "{seen:?}"
    );
    assert_eq!(
        seen.len(),
        3,
        "the two warm-ups and one deposit of the key: {seen:?}"
    );
}
