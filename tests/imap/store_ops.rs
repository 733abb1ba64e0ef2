//! Renditions, `attachfmt` and forwards of messages kept in IMAP, through the REST API against a
//! private Dovecot, checked with Python's imaplib and ffmpeg.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::json;

use crate::api::{CTX, configure, ffmpeg_decodes, imaplib, json_ok, walk};
use crate::common::dovecot::TestDovecot;
use crate::common::{TestApp, assert_problem, audio};

/// Alice's mailbox (her own login); bob and carol log in through the master user.
const ALICE: &str = "1234@imapctx";
const BOB: &str = "bob@imapctx";
const CAROL: &str = "carol@imapctx";
const PLAIN: &str = "2001@plain";

/// Every undeleted voicemail of `user`'s INBOX as imaplib sees it, one line each:
/// `flags|subject|X-Asterisk-VM-Extension|X-Voxmail-Message-Id|attachments`; attachments are
/// saved into `dir` as `<n>-<filename>` (n = position in the listing).
fn inbox_of(server: &TestDovecot, user: &str, dir: &Path) -> Vec<String> {
    let script = "m.select('INBOX', readonly=True)\n\
        typ, data = m.uid('SEARCH', None, 'UNDELETED')\n\
        for n, uid in enumerate(data[0].split()):\n\
        \x20   typ, d = m.uid('FETCH', uid, '(FLAGS BODY.PEEK[])')\n\
        \x20   flags = ' '.join(sorted(f.decode() for f in imaplib.ParseFlags(d[0][0]) if f != b'\\\\Recent'))\n\
        \x20   msg = email.message_from_bytes(d[0][1])\n\
        \x20   names = []\n\
        \x20   for part in msg.walk():\n\
        \x20       if part.get_filename():\n\
        \x20           names.append(part.get_filename() + ' ' + part.get_content_type())\n\
        \x20           open(f'{sys.argv[5]}/{n}-' + part.get_filename(), 'wb').write(part.get_payload(decode=True))\n\
        \x20   print(f\"{flags}|{msg['Subject']}|{msg['X-Asterisk-VM-Extension']}|{msg['X-Voxmail-Message-Id']}|{','.join(names)}\")\n";
    imaplib(server, user, script, &[dir.to_str().unwrap()])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Cached renditions of IMAP messages in the audio store (`imap/…`).
fn cached_renditions(app: &TestApp) -> Vec<PathBuf> {
    let dir = app.data_dir().join("audio").join("imap");
    if dir.exists() { walk(&dir) } else { Vec::new() }
}

async fn deposit(app: &TestApp, address: &str, wav: Vec<u8>) -> String {
    app.deposit_ok(address, wav, "audio/wav").await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn get_bytes(app: &TestApp, path: &str) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let r = app.get(path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path}");
    let h = r.headers().clone();
    (h, r.bytes().await.unwrap().to_vec())
}

async fn ids(app: &TestApp, address: &str) -> Vec<String> {
    let r = app
        .get(&format!("/v1/mailboxes/{address}/messages"))
        .send()
        .await
        .unwrap();
    json_ok(r, StatusCode::OK).await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `?format=` and `audio.<ext>` of an IMAP message are transcoded from the attachment once and
/// cached under the message id, so a move (new folder, new UID) still finds them; a delete
/// through the API removes them.
#[tokio::test]
async fn renditions_of_imap_messages_are_cached_by_id_and_go_with_the_message() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(ALICE, json!({})).await;
    let id = deposit(&app, ALICE, audio::wav_pcm16(1.5, 8000)).await;
    let path = format!("/v1/mailboxes/{ALICE}/messages/{id}");

    let (h, opus) = get_bytes(&app, &format!("{path}/audio?format=opus")).await;
    assert!(
        h["content-type"].to_str().unwrap().starts_with("audio/ogg"),
        "{h:?}"
    );
    assert_eq!(&opus[..4], b"OggS");
    let etag = h["etag"].to_str().unwrap().to_owned();
    let cached = cached_renditions(&app);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].to_str().unwrap().contains(&id), "{cached:?}");
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("msg.opus");
    std::fs::write(&saved, &opus).unwrap();
    ffmpeg_decodes(&saved);

    let (_, gsm) = get_bytes(&app, &format!("{path}/audio.gsm")).await;
    assert!(
        !gsm.is_empty() && gsm.len().is_multiple_of(33),
        "{} bytes",
        gsm.len()
    );
    assert_eq!(cached_renditions(&app).len(), 2);

    // A conditional request is answered from the tag alone.
    let r = app
        .get(&format!("{path}/audio?format=opus"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Moved to Work: another folder and UID, the same id and the same cached rendition.
    let r = app
        .patch(&path)
        .json(&json!({"folder": "Work"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r, StatusCode::OK).await["folder"], "Work");
    let before: Vec<_> = cached_renditions(&app)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    let (h2, again) = get_bytes(&app, &format!("{path}/audio?format=opus")).await;
    assert_eq!(again, opus);
    assert_eq!(h2["etag"].to_str().unwrap(), etag);
    let after: Vec<_> = cached_renditions(&app)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(before.len(), 2);
    assert_eq!(
        before.iter().collect::<std::collections::BTreeSet<_>>(),
        after.iter().collect::<std::collections::BTreeSet<_>>(),
        "served from the cache, not made again"
    );

    // Deleted through the API: its renditions go with it.
    let r = app.delete(&path).send().await.unwrap();
    assert!(r.status().is_success(), "delete: {}", r.status());
    assert!(cached_renditions(&app).is_empty());
    let r = app
        .get(&format!("{path}/audio?format=opus"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not-found").await;
}

/// A mail client deletes a voicemail voxmail never hears about: the orphan collector asks the
/// IMAP server and removes only that message's cached rendition.
#[tokio::test]
async fn orphan_collector_removes_renditions_of_messages_a_mail_client_deleted() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(ALICE, json!({})).await;
    let gone = deposit(&app, ALICE, audio::wav_pcm16(1.0, 8000)).await;
    let kept = deposit(&app, ALICE, audio::wav_pcm16(1.2, 8000)).await;
    for id in [&gone, &kept] {
        get_bytes(
            &app,
            &format!("/v1/mailboxes/{ALICE}/messages/{id}/audio?format=opus"),
        )
        .await;
    }
    assert_eq!(cached_renditions(&app).len(), 2);
    imaplib(
        &server,
        "alice",
        "m.select('INBOX')\n\
         typ, d = m.uid('SEARCH', None, 'HEADER', 'X-Voxmail-Message-Id', sys.argv[5])\n\
         m.uid('STORE', d[0].split()[0], '+FLAGS', '(\\\\Deleted)')\n\
         m.expunge()\n",
        &[&gone],
    );
    let vm = app.services().await;
    let grace_ms = vm.config().audio.orphan_grace_secs as i64 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Young renditions are never judged.
    let young = vm.collect_orphans(now, false).await.unwrap();
    assert_eq!(young.removed, 0, "{young:?}");
    let sweep = vm
        .collect_orphans(now + grace_ms + 60_000, false)
        .await
        .unwrap();
    assert_eq!(sweep.removed, 1, "{sweep:?}");
    let left = cached_renditions(&app);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].to_str().unwrap().contains(&kept), "{left:?}");
}

/// A deposit is attached in the mailbox's `attachfmt`, as Asterisk attaches it: `wav49` →
/// `msg0000.WAV` (GSM in WAV), `gsm` → `msg0000.gsm`, `wav` → 8 kHz 16-bit PCM WAV even from a
/// 16 kHz recording; the deposit never goes through the audio store.
#[tokio::test]
async fn deposits_are_attached_in_the_mailbox_attachfmt() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(ALICE, json!({"attachfmt": "wav"})).await;
    app.create_mailbox(BOB, json!({"attachfmt": "wav49"})).await;
    app.create_mailbox(CAROL, json!({"attachfmt": "gsm"})).await;
    let dir = tempfile::tempdir().unwrap();

    let bob_id = deposit(&app, BOB, audio::wav_pcm16(1.0, 8000)).await;
    let seen = inbox_of(&server, "bob", dir.path());
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].ends_with("|msg0000.WAV audio/x-wav"), "{seen:?}");
    let wav49 = std::fs::read(dir.path().join("0-msg0000.WAV")).unwrap();
    assert_eq!(&wav49[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([wav49[20], wav49[21]]), 0x31, "GSM 6.10");
    ffmpeg_decodes(&dir.path().join("0-msg0000.WAV"));
    let got = json_ok(
        app.get(&format!("/v1/mailboxes/{BOB}/messages/{bob_id}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["audio"]["format"], "wav_gsm", "{got}");

    deposit(&app, CAROL, audio::wav_pcm16(1.0, 8000)).await;
    let seen = inbox_of(&server, "carol", dir.path());
    assert!(seen[0].ends_with("|msg0000.gsm audio/x-gsm"), "{seen:?}");
    let gsm = std::fs::read(dir.path().join("0-msg0000.gsm")).unwrap();
    assert!(
        !gsm.is_empty() && gsm.len().is_multiple_of(33),
        "{} bytes",
        gsm.len()
    );
    ffmpeg_decodes(&dir.path().join("0-msg0000.gsm"));

    deposit(&app, ALICE, audio::wav_pcm16(1.0, 16000)).await;
    let seen = inbox_of(&server, "alice", dir.path());
    assert!(seen[0].ends_with("|msg0000.wav audio/x-wav"), "{seen:?}");
    let wav = std::fs::read(dir.path().join("0-msg0000.wav")).unwrap();
    assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 1, "PCM");
    assert_eq!(
        u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]),
        8000
    );
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16, "16-bit");
    ffmpeg_decodes(&dir.path().join("0-msg0000.wav"));

    let audio_dir = app.data_dir().join("audio");
    let left = if audio_dir.exists() {
        walk(&audio_dir)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "audio left behind: {left:?}");
    // Received into a local scratch file and APPENDed from there: the audio store never saw it.
    assert!(!audio_dir.join("messages").exists());
}

/// Forwards between IMAP mailboxes and into and out of SQL ones: each IMAP copy is composed for
/// its mailbox (its own extension, msgnum and subject), SQL copies play the same bytes, `keep:
/// false` moves, and a full target refuses the whole forward with nothing left behind.
#[tokio::test]
async fn forward_between_imap_and_sql_mailboxes() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(ALICE, json!({})).await;
    app.create_mailbox(BOB, json!({})).await;
    app.create_mailbox(CAROL, json!({"maxmsg": 1})).await;
    app.create_mailbox(PLAIN, json!({})).await;
    let dir = tempfile::tempdir().unwrap();
    let wav = audio::wav_pcm16(1.5, 8000);
    let a = deposit(&app, ALICE, wav.clone()).await;
    let forward = |from: &str, id: &str, to: Vec<&str>, keep: bool| {
        app.post(&format!("/v1/mailboxes/{from}/messages/{id}/forward"))
            .json(&json!({"to": to, "keep": keep}))
            .send()
    };

    // IMAP → IMAP and IMAP → SQL, keeping the original.
    let r = forward(ALICE, &a, vec![BOB, PLAIN], true).await.unwrap();
    let made = json_ok(r, StatusCode::CREATED).await;
    let items = made["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{made}");
    let bob_copy = items[0]["id"].as_str().unwrap().to_owned();
    let plain_copy = items[1]["id"].as_str().unwrap().to_owned();
    let seen = inbox_of(&server, "bob", dir.path());
    assert_eq!(
        seen,
        vec![format!(
            "|[PBX]: New message 1 in mailbox bob|bob|{bob_copy}|msg0000.wav audio/x-wav"
        )]
    );
    assert_eq!(
        std::fs::read(dir.path().join("0-msg0000.wav")).unwrap(),
        wav
    );
    let (_, plain_audio) = get_bytes(
        &app,
        &format!("/v1/mailboxes/{PLAIN}/messages/{plain_copy}/audio"),
    )
    .await;
    assert_eq!(plain_audio, wav);
    let got = json_ok(
        app.get(&format!("/v1/mailboxes/{PLAIN}/messages/{plain_copy}"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["forwarded_from"], a.as_str(), "{got}");
    assert_eq!(ids(&app, ALICE).await, vec![a.clone()]);

    // IMAP → IMAP without keep: a move.
    let r = forward(ALICE, &a, vec![CAROL], false).await.unwrap();
    json_ok(r, StatusCode::CREATED).await;
    assert!(ids(&app, ALICE).await.is_empty());
    assert!(inbox_of(&server, "alice", dir.path()).is_empty());
    let seen = inbox_of(&server, "carol", dir.path());
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("|carol|"), "{seen:?}");

    // SQL → IMAP without keep: the copy is bob's second voicemail, the SQL original is gone.
    let s = deposit(&app, PLAIN, wav.clone()).await;
    let r = forward(PLAIN, &s, vec![BOB], false).await.unwrap();
    json_ok(r, StatusCode::CREATED).await;
    assert_eq!(ids(&app, PLAIN).await, vec![plain_copy.clone()]);
    let seen = inbox_of(&server, "bob", dir.path());
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[1].starts_with("|[PBX]: New message 2 in mailbox bob|bob|"),
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("1-msg0001.wav")).unwrap(),
        wav
    );

    // Carol is full (maxmsg 1): the whole forward is refused, the SQL and IMAP copies made
    // before the refusal are undone, the original stays.
    let r = forward(BOB, &bob_copy, vec![PLAIN, ALICE, CAROL], false)
        .await
        .unwrap();
    assert_problem(r, 507, "mailbox-full").await;
    assert_eq!(ids(&app, PLAIN).await, vec![plain_copy.clone()]);
    assert!(ids(&app, ALICE).await.is_empty());
    assert!(inbox_of(&server, "alice", dir.path()).is_empty());
    assert_eq!(inbox_of(&server, "bob", dir.path()).len(), 2);
    assert_eq!(inbox_of(&server, "carol", dir.path()).len(), 1);
    let _ = CTX;
}

/// voxmail composes a greeting exactly as Asterisk stores one with `imapgreetings = yes`
/// (fixtures/imap/asterisk-greeting-unavail.eml, written by make.py from app_voicemail.c).
#[test]
fn greeting_composer_matches_the_asterisk_fixture_byte_for_byte() {
    let (_, env) = crate::wav49_fixture_inputs();
    let meta = voxmail::imap::format::VoicemailMeta {
        context: "default".into(),
        mailbox: "1234".into(),
        duration_secs: 3,
        orig_time: 1_700_000_000,
        ..Default::default()
    };
    let audio = crate::fixture("imap/hello-wav49.wav");
    let ours = voxmail::imap::format::compose_greeting(
        "unavail",
        &meta,
        &env,
        &voxmail::imap::format::AudioAttachment {
            format: "wav49",
            data: &audio,
        },
    );
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&crate::fixture("imap/asterisk-greeting-unavail.eml"))
    );
}

/// The messages of `folder` of `user` as imaplib sees them: `subject|message type|attachments`.
fn folder_of(server: &TestDovecot, user: &str, folder: &str) -> Vec<String> {
    let script = "typ, _ = m.select(sys.argv[5], readonly=True)\n\
        if typ != 'OK':\n\
        \x20   sys.exit(0)\n\
        typ, data = m.uid('SEARCH', None, 'UNDELETED')\n\
        for uid in data[0].split():\n\
        \x20   typ, d = m.uid('FETCH', uid, '(BODY.PEEK[])')\n\
        \x20   msg = email.message_from_bytes(d[0][1])\n\
        \x20   names = [p.get_filename() + ' ' + p.get_content_type() for p in msg.walk() if p.get_filename()]\n\
        \x20   print(f\"{msg['Subject']}|{msg['X-Asterisk-VM-Message-Type']}|{','.join(names)}\")\n";
    imaplib(server, user, script, &[folder])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// With `greetings = "imap"` a greeting is a message in the greeting folder in Asterisk's
/// format: PUT appends it (and removes the one it replaces), GET describes and plays it, DELETE
/// removes it; greetings never show as voicemail or in the MWI counts.
#[tokio::test]
async fn greetings_in_an_imap_greeting_folder() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        let ctx = c.imap.contexts.get_mut(CTX).unwrap();
        ctx.greetings = voxmail::config::KeptIn::Imap;
        ctx.greeting_folder = "Greetings".into();
    })
    .await;
    app.create_mailbox(ALICE, json!({})).await;
    let path = format!("/v1/mailboxes/{ALICE}/greetings/unavailable");
    let first = audio::wav_pcm16(1.0, 8000);
    let r = app
        .put(&path)
        .header("content-type", "audio/wav")
        .body(first.clone())
        .send()
        .await
        .unwrap();
    let made = json_ok(r, StatusCode::CREATED).await;
    assert_eq!(made["kind"], "unavailable", "{made}");
    let seen = folder_of(&server, "alice", "Greetings");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with("New greeting 'unavail' on ")
            && seen[0].ends_with("|unavail|unavail.wav audio/x-wav"),
        "{seen:?}"
    );
    let (_, played) = get_bytes(&app, &path).await;
    assert_eq!(played, first);

    // Replaced: one greeting message, the new recording.
    let second = audio::wav_pcm16(2.0, 8000);
    let r = app
        .put(&path)
        .header("content-type", "audio/wav")
        .body(second.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(folder_of(&server, "alice", "Greetings").len(), 1);
    let (_, played) = get_bytes(&app, &path).await;
    assert_eq!(played, second);
    // A rendition of the greeting kept in IMAP: Ogg Opus that ffmpeg decodes to its length,
    // the second time from the cache (same bytes).
    let (h, opus) = get_bytes(&app, &format!("{path}?format=opus")).await;
    assert_eq!(h["content-type"], "audio/ogg; codecs=opus", "{h:?}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &opus).unwrap();
    let secs = crate::common::smtp::audio_duration(file.path());
    assert!(
        (secs - 2.0).abs() < 0.1,
        "the greeting's Opus lasts {secs} s"
    );
    let (_, again) = get_bytes(&app, &format!("{path}?format=opus")).await;
    assert_eq!(again, opus);
    let desc = json_ok(
        app.get(&path)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(desc["duration_ms"], 2000, "{desc}");
    assert_eq!(desc["audio"]["size"], second.len(), "{desc}");

    // Not a voicemail, not counted.
    assert!(ids(&app, ALICE).await.is_empty());
    assert_eq!(app.mwi(ALICE).await["new"], 0);

    let r = app.delete(&path).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(folder_of(&server, "alice", "Greetings").is_empty());
    let r = app.get(&path).send().await.unwrap();
    assert_problem(r, 404, "not-found").await;
}

/// Greetings kept in INBOX, as Asterisk's default `greetingfolder`: one Asterisk wrote
/// (fixtures/imap) is played through the REST API, and neither it nor voxmail's own greeting
/// is listed or counted as voicemail beside a real voicemail.
#[tokio::test]
async fn greetings_beside_the_voicemail_in_inbox() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| {
        configure(&server, c);
        let mut ctx = c.imap.contexts[CTX].clone();
        ctx.mailboxes.clear();
        ctx.user_format = "alice".into();
        ctx.greetings = voxmail::config::KeptIn::Imap;
        c.imap.contexts.insert("default".into(), ctx);
    })
    .await;
    app.create_mailbox("1234@default", json!({})).await;
    let eml = crate::common::fixture("imap/asterisk-greeting-unavail.eml");
    let dir = tempfile::tempdir().unwrap();
    let eml_path = dir.path().join("greeting.eml");
    std::fs::write(&eml_path, &eml).unwrap();
    imaplib(
        &server,
        "alice",
        "m.append('INBOX', None, None, open(sys.argv[5], 'rb').read())\n",
        &[eml_path.to_str().unwrap()],
    );
    let base = "/v1/mailboxes/1234@default";
    let want = voxmail::imap::parse(&eml).unwrap().audio.unwrap().data;
    let (_, played) = get_bytes(&app, &format!("{base}/greetings/unavailable")).await;
    assert_eq!(played, want);
    let r = app
        .put(&format!("{base}/greetings/busy"))
        .header("content-type", "audio/wav")
        .body(audio::wav_pcm16(1.0, 8000))
        .send()
        .await
        .unwrap();
    json_ok(r, StatusCode::CREATED).await;
    let id = deposit(&app, "1234@default", audio::wav_pcm16(1.0, 8000)).await;
    assert_eq!(ids(&app, "1234@default").await, vec![id]);
    let counts = app.mwi("1234@default").await;
    assert_eq!(
        (counts["new"].as_u64(), counts["old"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(folder_of(&server, "alice", "INBOX").len(), 3);
}

/// Asterisk's custom folders Cust1-5 are real IMAP folders: a message moved there (any case) is
/// in `Cust2` for a mail client and listed under it; other custom names are refused, since
/// Asterisk would never look there.
#[tokio::test]
async fn asterisk_custom_folders_are_real_imap_folders() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let app = TestApp::spawn_with(|c| configure(&server, c)).await;
    app.create_mailbox(ALICE, json!({})).await;
    let id = deposit(&app, ALICE, audio::wav_pcm16(1.0, 8000)).await;
    let path = format!("/v1/mailboxes/{ALICE}/messages/{id}");
    let count = |folder: &str| -> usize { folder_of(&server, "alice", folder).len() };
    let r = app
        .patch(&path)
        .json(&json!({"folder": "cust2"}))
        .send()
        .await
        .unwrap();
    let moved = json_ok(r, StatusCode::OK).await;
    assert_eq!(moved["folder"], "Cust2", "{moved}");
    assert_eq!(moved["id"], id.as_str());
    assert_eq!(count("Cust2"), 1);
    assert_eq!(count("INBOX"), 0);
    assert_eq!(ids(&app, ALICE).await, vec![id.clone()]);
    let r = app
        .get(&format!("/v1/mailboxes/{ALICE}/messages?folder=Cust2"))
        .send()
        .await
        .unwrap();
    let listed = json_ok(r, StatusCode::OK).await;
    assert_eq!(listed["items"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["items"][0]["msgnum"], 0, "{listed}");

    let r = app
        .patch(&path)
        .json(&json!({"folder": "Archive"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 501, "not-implemented").await;
    assert_eq!(count("Cust2"), 1);

    let r = app
        .patch(&path)
        .json(&json!({"folder": "INBOX"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_ok(r, StatusCode::OK).await["folder"], "INBOX");
    assert_eq!(count("Cust2"), 0);
    assert_eq!(count("INBOX"), 1);
}
