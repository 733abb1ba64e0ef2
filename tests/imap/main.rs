//! IMAP storage building blocks (src/imap) against a real Dovecot (tests/common/dovecot.rs) and a
//! mail client we did not write (Python's imaplib), plus the Asterisk-format fixtures of
//! fixtures/imap (written by fixtures/imap/make.py from Asterisk's app_voicemail code).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cluster;
mod events;
mod store_ops;

use common::dovecot;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovecot::TestDovecot;
use voxmail::domain::Folder;
use voxmail::imap::format::{self, AudioAttachment, Envelope, VoicemailMeta};
use voxmail::imap::{Change, Counts, ImapClient, ImapError, Owner};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

fn owner() -> Owner {
    Owner::new("1234", "default")
}

/// The inputs make.py used for fixtures/imap/asterisk-wav49.eml.
fn wav49_fixture_inputs() -> (VoicemailMeta, Envelope) {
    let meta = VoicemailMeta {
        msgnum: 0,
        server_name: String::new(),
        context: "default".into(),
        mailbox: "1234".into(),
        flag: String::new(),
        priority: 2,
        caller_id_num: "5551234".into(),
        caller_id_name: "Bob Smith".into(),
        duration_secs: 3,
        category: String::new(),
        message_type: "Message".into(),
        orig_time: 1_700_000_000,
        msg_id: "1700000000-00000000".into(),
    };
    let env = Envelope {
        hostname: "pbx1".into(),
        to_name: "Alice Jones".into(),
        to_email: "alice@example.com".into(),
        pid: 4242,
        nonce: 1_804_289_383,
        ..Envelope::default()
    };
    (meta, env)
}

/// A voicemail composed by voxmail for mailbox 1234@default.
fn composed(msgnum: u32, urgent: bool) -> Vec<u8> {
    let (mut meta, env) = wav49_fixture_inputs();
    meta.msgnum = msgnum;
    meta.msg_id = format!("1700000000-{msgnum:08x}");
    if urgent {
        meta.flag = format::FLAG_URGENT.into();
    }
    let audio = fixture("hello-pcm16.wav");
    format::compose(
        &meta,
        &env,
        &AudioAttachment {
            format: "wav",
            data: &audio,
        },
    )
}

const ORDINARY: &str = "From: Carol <carol@example.com>\r\nTo: alice@example.com\r\n\
    Subject: lunch?\r\nMessage-ID: <lunch-1@example.com>\r\nDate: Tue, 14 Nov 2023 12:00:00 +0000\r\n\
    \r\nAre you free at noon? X-Asterisk-VM-Extension: 1234\r\n";

async fn connect(server: &TestDovecot, user: &str) -> ImapClient {
    ImapClient::connect(Arc::new(server.account(user)), owner())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}\n{}", server.logs()))
}

/// Runs a Python imaplib script with `host port user password` as argv[1..5]; returns stdout.
fn imaplib(server: &TestDovecot, user: &str, script: &str, extra: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
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

const PY_PRELUDE: &str = "import imaplib, sys, email\n\
    m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))\n\
    m.login(sys.argv[3], sys.argv[4])\n";

/// Every message of INBOX as imaplib sees it: `uid|flags|subject` lines, sorted by UID.
fn inbox_as_seen_by_imaplib(server: &TestDovecot, user: &str) -> Vec<String> {
    let script = format!(
        "{PY_PRELUDE}m.select('INBOX', readonly=True)\n\
         typ, data = m.uid('FETCH', '1:*', '(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')\n\
         for item in data:\n\
         \x20   if isinstance(item, tuple):\n\
         \x20       meta = item[0].decode()\n\
         \x20       uid = meta.split('UID ')[1].split()[0]\n\
         \x20       flags = ' '.join(sorted((f.decode() for f in imaplib.ParseFlags(item[0]) if f != b'\\\\Recent')))\n\
         \x20       subj = email.message_from_bytes(item[1])['Subject']\n\
         \x20       print(f'{{uid}}|{{flags}}|{{subj}}')\n"
    );
    let mut lines: Vec<String> = imaplib(server, user, &script, &[])
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort_by_key(|l| l.split('|').next().and_then(|u| u.parse::<u32>().ok()));
    lines
}

fn ffmpeg_decodes(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg cannot decode {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// voxmail's composer writes exactly what Asterisk writes (make.py follows app_voicemail.c).
#[test]
fn composer_matches_the_asterisk_fixtures_byte_for_byte() {
    let (meta, env) = wav49_fixture_inputs();
    let audio = fixture("imap/hello-wav49.wav");
    let ours = format::compose(
        &meta,
        &env,
        &AudioAttachment {
            format: "wav49",
            data: &audio,
        },
    );
    assert_eq!(
        String::from_utf8_lossy(&ours),
        String::from_utf8_lossy(&fixture("imap/asterisk-wav49.eml"))
    );

    let (mut meta, mut env) = wav49_fixture_inputs();
    meta.msgnum = 1;
    meta.flag = "Urgent".into();
    meta.priority = 1;
    meta.caller_id_num = "5559876".into();
    meta.caller_id_name = String::new();
    meta.category = "sales".into();
    meta.msg_id = "1700000000-00000001".into();
    meta.server_name = "Voicemail System".into();
    env.from_string = "Voicemail System".into();
    let audio = fixture("hello-pcm16.wav");
    let ours = format::compose(
        &meta,
        &env,
        &AudioAttachment {
            format: "wav",
            data: &audio,
        },
    );
    assert_eq!(ours, fixture("imap/asterisk-wav-urgent.eml"));
}

/// The fixtures parse with the right metadata and attachments, also with the header names
/// lower-cased as Exchange stores them; the WAV49 attachment decodes with voxmail's decoder.
#[test]
fn asterisk_fixtures_parse_and_their_audio_decodes() {
    let raw = fixture("imap/asterisk-wav49.eml");
    let p = format::parse(&raw).expect("a voicemail");
    assert_eq!(p.meta, wav49_fixture_inputs().0);
    assert_eq!(p.subject, "[PBX]: New message 1 in mailbox 1234");
    let a = p.audio.expect("attachment");
    assert_eq!(a.filename, "msg0000.WAV");
    assert_eq!(a.content_type, "audio/x-wav");
    assert_eq!(a.format, "wav49");
    assert_eq!(a.data, fixture("imap/hello-wav49.wav"));
    let pcm = voxmail::audio::decode_any(&a.data, voxmail::audio::RawHint::Wav).expect("decodes");
    assert_eq!(pcm.rate, 8000);
    assert!(pcm.samples.len() > 20_000, "{} samples", pcm.samples.len());

    let lowered: Vec<u8> = String::from_utf8_lossy(&raw)
        .split_inclusive("\r\n")
        .map(|l| match l.split_once(':') {
            Some((n, v)) if n.starts_with("X-Asterisk") => format!("{}:{v}", n.to_lowercase()),
            _ => l.to_owned(),
        })
        .collect::<String>()
        .into_bytes();
    assert_eq!(
        format::parse(&lowered).expect("lower-case").meta,
        wav49_fixture_inputs().0
    );

    let urgent = format::parse(&fixture("imap/asterisk-wav-urgent.eml")).expect("a voicemail");
    assert!(urgent.meta.is_urgent());
    assert_eq!(urgent.meta.msgnum, 1);
    assert_eq!(urgent.meta.server_name, "Voicemail System");
    assert_eq!(
        urgent.audio.expect("attachment").data,
        fixture("hello-pcm16.wav")
    );
}

/// A voxmail-composed voicemail APPENDed by voxmail is, for imaplib and Python's email package,
/// a normal e-mail whose attachment ffmpeg decodes; APPENDUID gives its UID; it is flagged when
/// urgent.
#[tokio::test]
async fn appended_voicemail_is_a_normal_email_for_imaplib() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    assert!(c.has_capability("UIDPLUS") && c.has_capability("IDLE"));
    let uid = c
        .append(&Folder::Inbox, &composed(0, true), true)
        .await
        .expect("append")
        .expect("APPENDUID");

    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "{PY_PRELUDE}m.select('INBOX')\n\
         typ, data = m.uid('FETCH', sys.argv[5], '(FLAGS BODY.PEEK[])')\n\
         print(' '.join(sorted((f.decode() for f in imaplib.ParseFlags(data[0][0]) if f != b'\\\\Recent'))))\n\
         msg = email.message_from_bytes(data[0][1])\n\
         print(msg['Subject'])\n\
         for part in msg.walk():\n\
         \x20   if part.get_filename():\n\
         \x20       print(part.get_filename(), part.get_content_type())\n\
         \x20       open(sys.argv[6] + '/' + part.get_filename(), 'wb').write(part.get_payload(decode=True))\n"
    );
    let out = imaplib(
        &server,
        "alice",
        &script,
        &[&uid.to_string(), dir.path().to_str().unwrap()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "\\Flagged", "flags: {out}");
    assert_eq!(lines[1], "[PBX]: New Urgent message 1 in mailbox 1234");
    assert_eq!(lines[2], "msg0000.wav audio/x-wav");
    let saved: PathBuf = dir.path().join("msg0000.wav");
    assert_eq!(std::fs::read(&saved).unwrap(), fixture("hello-pcm16.wav"));
    ffmpeg_decodes(&saved);
    // Fetching with BODY.PEEK[] left it unread.
    let got = c.fetch(&Folder::Inbox, uid).await.expect("fetch");
    assert!(!got.summary.seen && got.summary.flagged);
    assert_eq!(
        c.counts().await.unwrap(),
        Counts {
            new: 1,
            old: 0,
            urgent_new: 1,
            urgent_old: 0
        }
    );
}

/// An Asterisk-written message APPENDed raw is listed and fetched by voxmail with the right
/// metadata, and its WAV49 recording decodes (voxmail's decoder and ffmpeg).
#[tokio::test]
async fn asterisk_written_voicemail_is_listed_and_played() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    let raw = fixture("imap/asterisk-wav49.eml");
    let uid = c
        .append(&Folder::Inbox, &raw, false)
        .await
        .unwrap()
        .unwrap();
    let list = c.list(&Folder::Inbox).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].uid, uid);
    assert_eq!(list[0].meta, wav49_fixture_inputs().0);
    assert!(!list[0].seen && !list[0].flagged);
    let got = c.fetch(&Folder::Inbox, uid).await.unwrap();
    assert_eq!(got.raw, raw, "stored byte for byte");
    let audio = got.parsed.audio.expect("attachment");
    assert_eq!(audio.format, "wav49");
    voxmail::audio::decode_any(&audio.data, voxmail::audio::RawHint::Wav).expect("decodes");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(&audio.filename);
    std::fs::write(&path, &audio.data).unwrap();
    ffmpeg_decodes(&path);
}

/// Ordinary mail in the same INBOX — one of them marked \Deleted by the user's mail client but
/// not expunged — is never listed, changed or expunged while voxmail deletes and moves
/// voicemails; move and delete affect exactly their target UIDs.
#[tokio::test]
async fn ordinary_mail_is_never_touched_and_only_targets_change() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    // Mail of the user: two ordinary messages (one \Deleted, one \Flagged) and a voicemail of
    // another mailbox in the same INBOX.
    let script = format!(
        "{PY_PRELUDE}m.append('INBOX', '(\\\\Deleted)', None, sys.argv[5].encode())\n\
         m.append('INBOX', '(\\\\Flagged)', None, sys.argv[5].replace('lunch', 'dinner').encode())\n"
    );
    imaplib(&server, "alice", &script, &[ORDINARY]);
    let other = String::from_utf8(composed(0, false)).unwrap().replace(
        "X-Asterisk-VM-Extension: 1234",
        "X-Asterisk-VM-Extension: 12345",
    );
    c.append(&Folder::Inbox, other.as_bytes(), false)
        .await
        .unwrap();
    let v1 = c
        .append(&Folder::Inbox, &composed(0, false), false)
        .await
        .unwrap()
        .unwrap();
    let v2 = c
        .append(&Folder::Inbox, &composed(1, false), false)
        .await
        .unwrap()
        .unwrap();
    let v3 = c
        .append(&Folder::Inbox, &composed(2, false), false)
        .await
        .unwrap()
        .unwrap();
    let before = inbox_as_seen_by_imaplib(&server, "alice");
    assert_eq!(before.len(), 6, "{before:?}");

    let listed: Vec<u32> = c
        .list(&Folder::Inbox)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(listed, [v1, v2, v3], "only mailbox 1234's voicemails");

    // Ordinary mail and other mailboxes' voicemails cannot be changed through voxmail.
    for uid in [1, 2, 3] {
        let e = c.delete(&Folder::Inbox, uid).await.unwrap_err();
        assert!(matches!(e, ImapError::NotFound { .. }), "{e}");
        let e = c.set_seen(&Folder::Inbox, uid, true).await.unwrap_err();
        assert!(matches!(e, ImapError::NotFound { .. }), "{e}");
    }

    c.delete(&Folder::Inbox, v1).await.expect("delete");
    let moved = c
        .move_to(&Folder::Inbox, v2, &Folder::Work)
        .await
        .expect("move");
    assert!(moved.is_some(), "COPYUID of the move");

    let after = inbox_as_seen_by_imaplib(&server, "alice");
    let expected: Vec<String> = before
        .iter()
        .filter(|l| !l.starts_with(&format!("{v1}|")) && !l.starts_with(&format!("{v2}|")))
        .cloned()
        .collect();
    assert_eq!(
        after, expected,
        "only the two targets left INBOX, flags unchanged"
    );
    assert!(
        after[0].contains("\\Deleted"),
        "the user's \\Deleted mail was not expunged"
    );

    let listed: Vec<u32> = c
        .list(&Folder::Inbox)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(listed, [v3]);
    let work = c.list(&Folder::Work).await.unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].meta.msgnum, 1);
    assert_eq!(Some(work[0].uid), moved);
    // Old is INBOX \Seen, as in Asterisk: moving there and back only changes the flag.
    assert_eq!(
        c.move_to(&Folder::Inbox, v3, &Folder::Old).await.unwrap(),
        Some(v3)
    );
    assert_eq!(c.list(&Folder::Old).await.unwrap().len(), 1);
    assert_eq!(
        c.counts().await.unwrap(),
        Counts {
            new: 0,
            old: 1,
            ..Counts::default()
        }
    );
    c.move_to(&Folder::Old, v3, &Folder::Inbox).await.unwrap();
    assert_eq!(
        c.counts().await.unwrap(),
        Counts {
            new: 1,
            old: 0,
            ..Counts::default()
        }
    );
    // Back from Work into INBOX.
    let back = c
        .move_to(&Folder::Work, work[0].uid, &Folder::Inbox)
        .await
        .unwrap();
    assert!(back.is_some());
    assert_eq!(c.list(&Folder::Inbox).await.unwrap().len(), 2);
    assert!(c.list(&Folder::Work).await.unwrap().is_empty());
}

/// A message marked read in a mail client changes voxmail's counts; IDLE wakes on it within 2 s.
#[tokio::test]
async fn mail_client_changes_are_seen_and_wake_idle() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    let v1 = c
        .append(&Folder::Inbox, &composed(0, false), false)
        .await
        .unwrap()
        .unwrap();
    c.append(&Folder::Inbox, &composed(1, true), true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        c.counts().await.unwrap(),
        Counts {
            new: 2,
            old: 0,
            urgent_new: 1,
            urgent_old: 0
        }
    );

    let mut watcher = connect(&server, "alice").await;
    let store = format!(
        "{PY_PRELUDE}m.select('INBOX')\nm.uid('STORE', sys.argv[5], '+FLAGS', '(\\\\Seen)')\n"
    );
    let host = server.host.clone();
    let port = server.port;
    let change = tokio::spawn(async move {
        let start = Instant::now();
        let r = watcher
            .wait_for_change(&Folder::Inbox, Duration::from_secs(10))
            .await;
        (r, start.elapsed(), watcher)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let marked = Instant::now();
    imaplib(&server, "alice", &store, &[&v1.to_string()]);
    let (r, _, mut watcher) = change.await.unwrap();
    assert_eq!(r.expect("idle"), Change::Changed);
    let latency = marked.elapsed();
    assert!(
        latency < Duration::from_secs(2),
        "IDLE woke after {latency:?}"
    );
    assert_eq!(
        c.counts().await.unwrap(),
        Counts {
            new: 1,
            old: 1,
            urgent_new: 1,
            urgent_old: 0
        }
    );
    // The watcher's connection is usable after IDLE.
    assert_eq!(watcher.list(&Folder::Inbox).await.unwrap().len(), 2);
    // Nothing changes: the wait times out.
    let r = watcher
        .wait_for_change(&Folder::Inbox, Duration::from_millis(500))
        .await;
    assert_eq!(r.unwrap(), Change::Timeout);
    let _ = (host, port);
}

/// A connection remembers what it learnt of each UID (headers are read once), yet every listing
/// shows the flags as they are now, drops what a mail client deleted, and forgets a folder that
/// was deleted and made again (a new UIDVALIDITY: UID 1 is another message then).
#[tokio::test]
async fn listings_again_show_current_flags_and_a_recreated_folder() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    let v1 = c
        .append(&Folder::Inbox, &composed(0, false), false)
        .await
        .unwrap()
        .unwrap();
    let v2 = c
        .append(&Folder::Inbox, &composed(1, false), false)
        .await
        .unwrap()
        .unwrap();
    let flags = |l: &[voxmail::imap::VoicemailSummary]| -> Vec<(u32, bool, bool)> {
        l.iter().map(|m| (m.uid, m.seen, m.flagged)).collect()
    };
    let first = c.list(&Folder::Inbox).await.unwrap();
    assert_eq!(flags(&first), vec![(v1, false, false), (v2, false, false)]);
    // A mail client: v1 read and flagged, v2 deleted (not expunged).
    let script = format!(
        "{PY_PRELUDE}m.select('INBOX')\n\
         m.uid('STORE', sys.argv[5], '+FLAGS', '(\\\\Seen \\\\Flagged)')\n\
         m.uid('STORE', sys.argv[6], '+FLAGS', '(\\\\Deleted)')\n"
    );
    imaplib(
        &server,
        "alice",
        &script,
        &[&v1.to_string(), &v2.to_string()],
    );
    c.resync_next();
    let again = c.list(&Folder::Inbox).await.unwrap();
    assert_eq!(flags(&again), vec![(v1, true, true)]);
    assert_eq!(again[0].meta, first[0].meta, "the remembered headers");
    assert_eq!(
        c.counts().await.unwrap(),
        Counts {
            new: 0,
            old: 1,
            urgent_new: 0,
            urgent_old: 1
        }
    );
    // Undeleted again: listed again, with the headers it had.
    let script = format!(
        "{PY_PRELUDE}m.select('INBOX')\nm.uid('STORE', sys.argv[5], '-FLAGS', '(\\\\Deleted)')\n"
    );
    imaplib(&server, "alice", &script, &[&v2.to_string()]);
    c.resync_next();
    let back = c.list(&Folder::Inbox).await.unwrap();
    assert_eq!(flags(&back), vec![(v1, true, true), (v2, false, false)]);
    assert_eq!(back[1].meta.msg_id, "1700000000-00000001");

    // Work: one voicemail, listed; then a mail client deletes the folder and makes it again with
    // another voicemail, which gets UID 1 again under a new UIDVALIDITY.
    let w = c
        .append(&Folder::Work, &composed(5, false), false)
        .await
        .unwrap()
        .unwrap();
    let work = c.list(&Folder::Work).await.unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].meta.msg_id, "1700000000-00000005");
    c.list(&Folder::Inbox).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("other.eml");
    std::fs::write(&raw, composed(7, true)).unwrap();
    let work_name = c.folder_name(&Folder::Work).await.unwrap();
    let script = format!(
        "{PY_PRELUDE}m.select('INBOX')\n\
         typ, _ = m.delete(sys.argv[5]); assert typ == 'OK', typ\n\
         typ, _ = m.create(sys.argv[5]); assert typ == 'OK', typ\n\
         typ, data = m.append(sys.argv[5], '(\\\\Flagged)', None, open(sys.argv[6], 'rb').read())\n\
         assert typ == 'OK', typ\n\
         print(data[0].decode())\n"
    );
    let out = imaplib(
        &server,
        "alice",
        &script,
        &[&work_name, raw.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!(" {w}]")),
        "the new folder's message has UID {w} again: {out}"
    );
    let work = c.list(&Folder::Work).await.unwrap();
    assert_eq!(work.len(), 1, "{work:?}");
    assert_eq!(work[0].uid, w);
    assert_eq!(
        work[0].meta.msg_id, "1700000000-00000007",
        "the recreated folder's message, not the remembered one"
    );
    assert!(work[0].flagged);
}

/// Without IDLE (disabled for the account) the client polls and still sees a change.
#[tokio::test]
async fn polling_fallback_sees_changes() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    let v1 = c
        .append(&Folder::Inbox, &composed(0, false), false)
        .await
        .unwrap()
        .unwrap();
    let mut account = server.account("alice");
    account.use_idle = false;
    let mut watcher = ImapClient::connect(Arc::new(account), owner())
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        watcher
            .wait_for_change(&Folder::Inbox, Duration::from_secs(10))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let marked = Instant::now();
    let store = format!(
        "{PY_PRELUDE}m.select('INBOX')\nm.uid('STORE', sys.argv[5], '+FLAGS', '(\\\\Seen)')\n"
    );
    imaplib(&server, "alice", &store, &[&v1.to_string()]);
    assert_eq!(task.await.unwrap().unwrap(), Change::Changed);
    assert!(
        marked.elapsed() < Duration::from_secs(2),
        "{:?}",
        marked.elapsed()
    );
}

/// A master-user login (`alice*master`) reaches alice's mailbox; a wrong password is refused
/// without the password showing in the error.
#[tokio::test]
async fn master_user_login_and_refused_login() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    let uid = c
        .append(&Folder::Inbox, &composed(0, false), false)
        .await
        .unwrap()
        .unwrap();

    let mut account = server.account("alice");
    account.master_user = Some(dovecot::MASTER_USER.into());
    account.password = dovecot::MASTER_PASSWORD.into();
    let mut m = ImapClient::connect(Arc::new(account), owner())
        .await
        .expect("master login");
    let list = m.list(&Folder::Inbox).await.unwrap();
    assert_eq!(list.iter().map(|v| v.uid).collect::<Vec<_>>(), [uid]);

    let mut bad = server.account("bob");
    bad.password = "wrong-\"pass\\word".into();
    let e = ImapClient::connect(Arc::new(bad), owner())
        .await
        .unwrap_err();
    assert!(matches!(e, ImapError::Login { .. }), "{e}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("wrong-"), "{shown}");
    // bob's mailbox is empty and his voicemail is not alice's.
    let mut b = connect(&server, "bob").await;
    assert!(b.list(&Folder::Inbox).await.unwrap().is_empty());
}

/// A stopped server gives "unavailable" errors, never a guess.
#[tokio::test]
async fn a_stopped_server_is_unavailable() {
    let Some(server) = TestDovecot::start() else {
        return;
    };
    let mut c = connect(&server, "alice").await;
    let account = server.account("alice");
    drop(server);
    // The server's imap processes end shortly after its master.
    let deadline = Instant::now() + Duration::from_secs(5);
    let e = loop {
        match c.counts().await {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(counts) => panic!("still answering after the server stopped: {counts:?}"),
        }
    };
    assert!(e.is_unavailable(), "{e}");
    assert!(c.is_broken());
    assert!(matches!(c.counts().await.unwrap_err(), ImapError::Broken));
    let e = ImapClient::connect(Arc::new(account), owner())
        .await
        .unwrap_err();
    assert!(e.is_unavailable(), "{e}");
}
