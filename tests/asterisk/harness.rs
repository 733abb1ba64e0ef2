//! Smoke test of the harness (tests/common/asterisk.rs) on both SQL servers: Asterisk's own
//! ODBC_STORAGE table in a fresh database, a static mailbox, one message left with `VoiceMail()`
//! and played back once with `VoiceMailMain()`, the row read back over sqlx.

use std::time::Duration;

use sqlx::Connection;

use crate::common::asterisk::{Asterisk, AsteriskConfig};
use crate::common::db::{Backend, TestDb};

/// Asterisk's voicemail table (contrib/ast-db-manage/voicemail, all revisions applied: no
/// macrocontext, recording large enough for real messages).
fn create_table(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "CREATE TABLE voicemessages (
                dir VARCHAR(255) NOT NULL,
                msgnum INTEGER NOT NULL,
                context VARCHAR(80),
                callerid VARCHAR(80),
                origtime INTEGER,
                duration INTEGER,
                recording BYTEA,
                flag VARCHAR(30),
                category VARCHAR(30),
                mailboxuser VARCHAR(30),
                mailboxcontext VARCHAR(30),
                msg_id VARCHAR(40),
                PRIMARY KEY (dir, msgnum)
            )"
        }
        Backend::MySql => {
            "CREATE TABLE voicemessages (
                dir VARCHAR(255) NOT NULL,
                msgnum INTEGER NOT NULL,
                context VARCHAR(80),
                callerid VARCHAR(80),
                origtime INTEGER,
                duration INTEGER,
                recording LONGBLOB,
                flag VARCHAR(30),
                category VARCHAR(30),
                mailboxuser VARCHAR(30),
                mailboxcontext VARCHAR(30),
                msg_id VARCHAR(40),
                PRIMARY KEY (dir, msgnum)
            )"
        }
        Backend::Sqlite => unreachable!("Asterisk ODBC runs on PostgreSQL or MySQL"),
    }
}

/// One row of `voicemessages`.
#[derive(Debug)]
struct Row {
    dir: String,
    msgnum: i32,
    mailboxuser: Option<String>,
    mailboxcontext: Option<String>,
    duration: Option<i32>,
    msg_id: Option<String>,
    recording: Vec<u8>,
}

type RawRow = (
    String,
    i32,
    Option<String>,
    Option<String>,
    Option<i32>,
    Option<String>,
    Option<Vec<u8>>,
);

const SELECT: &str = "SELECT dir, msgnum, mailboxuser, mailboxcontext, duration, msg_id, recording \
                      FROM voicemessages ORDER BY dir, msgnum";

async fn exec(db: &TestDb, sql: &'static str) {
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }
}

async fn rows(db: &TestDb) -> Vec<Row> {
    let raw: Vec<RawRow> = match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let r = sqlx::query_as(SELECT).fetch_all(&mut c).await.unwrap();
            c.close().await.unwrap();
            r
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
            let r = sqlx::query_as(SELECT).fetch_all(&mut c).await.unwrap();
            c.close().await.unwrap();
            r
        }
    };
    raw.into_iter()
        .map(
            |(dir, msgnum, mailboxuser, mailboxcontext, duration, msg_id, recording)| Row {
                dir,
                msgnum,
                mailboxuser,
                mailboxcontext,
                duration,
                msg_id,
                recording: recording.unwrap_or_default(),
            },
        )
        .collect()
}

const VOICEMAIL_CONF: &str = "[general]
format = wav49|gsm|wav
odbcstorage = asterisk
odbctable = voicemessages

[default]
1001 => 1234,Alice
";

/// `deposit@caller` / `listen@caller` run on the Local channel's `;2` side, `1001@vm` /
/// `main@vm` on its `;1` side. The unavailable greeting ("the person at extension 1 0 0 1 is
/// unavailable", beep) takes about 7.3 s; the caller then speaks for 3.7 s and hangs up, which
/// ends the recording. To listen, the caller presses 1 (first new message) during the intro and
/// stays on the line until the test hangs up.
const EXTENSIONS_CONF: &str = "[caller]
exten => deposit,1,Answer()
 same => n,Wait(8)
 same => n,Playback(vm-tocallback)
 same => n,Hangup()

exten => listen,1,Answer()
 same => n,Wait(1)
 same => n,SendDTMF(1)
 same => n,Wait(60)
 same => n,Hangup()

[vm]
exten => 1001,1,VoiceMail(1001@default,su)
 same => n,Hangup()

exten => main,1,VoiceMailMain(1001@default,s)
 same => n,Hangup()
";

const CALL_TIMEOUT: Duration = Duration::from_secs(40);

/// The `NewMsg` column of mailbox 1001 in `voicemail show users`.
fn new_messages(ast: &Asterisk) -> u32 {
    let out = ast.rx("voicemail show users for default");
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some("1001"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no mailbox 1001 in `voicemail show users`:\n{out}"))
}

async fn deposit_and_listen(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else {
        return;
    };
    exec(&db, create_table(backend)).await;
    let Some(ast) = Asterisk::start(AsteriskConfig::for_db(&db, VOICEMAIL_CONF, EXTENSIONS_CONF))
    else {
        return;
    };
    assert_eq!(new_messages(&ast), 0);

    ast.call("deposit@caller", "1001@vm", CALL_TIMEOUT);
    let stored = rows(&db).await;
    assert_eq!(stored.len(), 1, "{stored:?}\n{}", ast.logs());
    let row = &stored[0];
    assert_eq!(row.dir, ast.odbc_dir("default", "1001", "INBOX"));
    assert!(row.dir.ends_with("/default/1001/INBOX"), "{}", row.dir);
    assert_eq!(row.msgnum, 0);
    assert_eq!(row.mailboxuser.as_deref(), Some("1001"));
    assert_eq!(row.mailboxcontext.as_deref(), Some("default"));
    assert!(row.duration.is_some_and(|d| d >= 2), "{row:?}");
    assert!(row.msg_id.as_deref().is_some_and(|m| !m.is_empty()));
    // wav49 is GSM in a RIFF/WAVE file: the bytes as Asterisk recorded them, not a large object
    // id or an escaped text.
    assert!(row.recording.len() > 1000, "{} bytes", row.recording.len());
    assert_eq!(&row.recording[..4], b"RIFF");
    assert_eq!(&row.recording[8..12], b"WAVE");
    assert_eq!(new_messages(&ast), 1);
    let row_recording = row.recording.clone();

    // With ODBC_STORAGE the database is the store: nothing of the message stays in the spool.
    let inbox = std::path::PathBuf::from(ast.odbc_dir("default", "1001", "INBOX"));
    let left: Vec<_> = std::fs::read_dir(&inbox)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // Listen: Asterisk fetches the row into the spool and plays it (envelope first: "received
    // today at …"); the message menu ("press 3 for advanced options") follows once it has played.
    let mark = ast.log_mark();
    ast.originate("listen@caller", "main@vm");
    let playing = format!("Playing '{}/msg0000.", inbox.display());
    assert!(
        ast.wait_for_log_since(mark, &playing, CALL_TIMEOUT),
        "message 1 was not played:\n{}",
        ast.log_since(mark)
    );
    assert!(
        ast.wait_for_log_since(mark, "Playing 'vm-advopts.", CALL_TIMEOUT),
        "no message menu after message 1:\n{}",
        ast.log_since(mark)
    );
    ast.hangup_all();
    assert!(
        ast.wait_idle(CALL_TIMEOUT),
        "{}",
        ast.rx("core show channels")
    );
    let unexpected = ast.unexpected_warnings();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    for bad in ["Playback of message", "Unexpected header"] {
        assert!(!ast.log().contains(bad), "{bad}:\n{}", ast.log());
    }
    // Heard, so it moved to Old when the caller hung up.
    let stored = rows(&db).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].dir, ast.odbc_dir("default", "1001", "Old"));
    assert_eq!(stored[0].recording, row_recording);
    assert_eq!(new_messages(&ast), 0);
}

#[tokio::test]
async fn deposit_and_listen_postgres() {
    deposit_and_listen(Backend::Postgres).await;
}

#[tokio::test]
async fn deposit_and_listen_mariadb() {
    deposit_and_listen(Backend::MySql).await;
}
