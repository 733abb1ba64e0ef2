//! Asterisk 22's own ODBC_STORAGE statements (apps/app_voicemail.c, verbatim) against voxmail's
//! schema on PostgreSQL and MariaDB, with its parameters as text the way its ODBC binding sends
//! them — and what voxmail makes of each: deposits, saves to Old, deletes, renumbering, and
//! REST deposits Asterisk reads back. The real Asterisk runs the same story in `voicemail.rs`;
//! these cases need only the SQL servers, so a failure points at the schema or the take-in.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection;

use crate::common::db::Backend;
use crate::common::sse::SseClient;
use crate::common::{TestApp, fixture};

const SPOOL: &str = "/var/spool/asterisk";

/// A session of Asterisk's: not voxmail's, so its changes are logged for voxmail to take in.
pub enum AsteriskSql {
    Pg(sqlx::PgConnection),
    My(sqlx::MySqlConnection),
}

/// A text parameter as a literal (ODBC's SQL_CHAR binding: the server types it from the column).
fn lit(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

impl AsteriskSql {
    pub async fn connect(url: &str) -> Self {
        if url.starts_with("postgres") {
            Self::Pg(sqlx::PgConnection::connect(url).await.unwrap())
        } else {
            Self::My(sqlx::MySqlConnection::connect(url).await.unwrap())
        }
    }

    /// Runs `sql` with each `?` replaced by the next text parameter and `:rec` bound to
    /// `recording`; returns the rows affected.
    pub async fn exec(&mut self, sql: &str, params: &[&str], recording: Option<&[u8]>) -> u64 {
        let mut text = String::new();
        let mut it = params.iter();
        for part in sql.split('?').enumerate() {
            if part.0 > 0 {
                text.push_str(&lit(it.next().expect("a parameter per ?")));
            }
            text.push_str(part.1);
        }
        assert!(it.next().is_none(), "more parameters than ? in {sql}");
        match self {
            Self::Pg(c) => {
                let q = text.replace(":rec", "$1");
                let mut q = sqlx::query(sqlx::AssertSqlSafe(q));
                if let Some(r) = recording {
                    q = q.bind(r.to_vec());
                }
                q.execute(&mut *c)
                    .await
                    .unwrap_or_else(|e| panic!("{text}: {e}"))
                    .rows_affected()
            }
            Self::My(c) => {
                let q = text.replace(":rec", "?");
                let mut q = sqlx::query(sqlx::AssertSqlSafe(q));
                if let Some(r) = recording {
                    q = q.bind(r.to_vec());
                }
                q.execute(&mut *c)
                    .await
                    .unwrap_or_else(|e| panic!("{text}: {e}"))
                    .rows_affected()
            }
        }
    }

    /// The first column of the first row of `sql`, as an integer.
    pub async fn int(&mut self, sql: &str, params: &[&str]) -> Option<i64> {
        let text = params
            .iter()
            .fold(sql.to_owned(), |s, p| s.replacen('?', &lit(p), 1));
        match self {
            Self::Pg(c) => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(text))
                .fetch_optional(&mut *c)
                .await
                .unwrap(),
            Self::My(c) => sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(text))
                .fetch_optional(&mut *c)
                .await
                .unwrap(),
        }
    }

    /// retrieve_file's `SELECT *`: the column names and the recording.
    pub async fn retrieve(&mut self, dir: &str, msgnum: i64) -> (Vec<String>, Option<Vec<u8>>) {
        use sqlx::{Column, Row};
        let text = format!(
            "SELECT * FROM voicemessages WHERE dir={} AND msgnum={}",
            lit(dir),
            lit(&msgnum.to_string())
        );
        match self {
            Self::Pg(c) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(text))
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                let cols = row.columns().iter().map(|c| c.name().to_owned()).collect();
                (cols, row.get("recording"))
            }
            Self::My(c) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(text))
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                let cols = row.columns().iter().map(|c| c.name().to_owned()).collect();
                (cols, row.get("recording"))
            }
        }
    }

    /// store_file: DELETE the slot, then INSERT (no category).
    pub async fn store(
        &mut self,
        dir: &str,
        msgnum: i64,
        rec: &[u8],
        callerid: &str,
        msg_id: &str,
    ) {
        let n = msgnum.to_string();
        self.exec(DELETE_SQL, &[dir, &n], None).await;
        let (mailbox, context) = owner(dir);
        self.exec(
            "INSERT INTO voicemessages (dir, msgnum, recording, context, callerid, origtime, \
             duration, mailboxuser, mailboxcontext, flag, msg_id) \
             VALUES (?,?,:rec,?,?,?,?,?,?,?,?)",
            &[
                dir,
                &n,
                "default",
                callerid,
                "1700000000",
                "2",
                mailbox,
                context,
                "",
                msg_id,
            ],
            Some(rec),
        )
        .await;
    }

    /// copy_file: DELETE the destination slot, then INSERT … SELECT.
    pub async fn copy(&mut self, sdir: &str, smsg: i64, ddir: &str, dmsg: i64) {
        let (s, d) = (smsg.to_string(), dmsg.to_string());
        let (mailbox, context) = owner(ddir);
        self.exec(DELETE_SQL, &[ddir, &d], None).await;
        self.exec(
            "INSERT INTO voicemessages (dir, msgnum, msg_id, context, callerid, origtime, \
             duration, recording, flag, mailboxuser, mailboxcontext) \
             SELECT ?,?,msg_id,context,callerid,origtime,duration,recording,flag,?,? \
             FROM voicemessages WHERE dir=? AND msgnum=?",
            &[ddir, &d, mailbox, context, sdir, &s],
            None,
        )
        .await;
    }

    /// rename_file: DELETE the destination slot, then UPDATE.
    pub async fn rename(&mut self, sdir: &str, smsg: i64, ddir: &str, dmsg: i64) {
        let (s, d) = (smsg.to_string(), dmsg.to_string());
        let (mailbox, context) = owner(sdir);
        self.exec(DELETE_SQL, &[ddir, &d], None).await;
        self.exec(
            "UPDATE voicemessages SET dir=?, msgnum=? WHERE mailboxuser=? AND mailboxcontext=? \
             AND dir=? AND msgnum=?",
            &[ddir, &d, mailbox, context, sdir, &s],
            None,
        )
        .await;
    }

    pub async fn delete(&mut self, dir: &str, msgnum: i64) -> u64 {
        self.exec(DELETE_SQL, &[dir, &msgnum.to_string()], None)
            .await
    }

    pub async fn count(&mut self, dir: &str) -> i64 {
        self.int("SELECT COUNT(*) FROM voicemessages WHERE dir=?", &[dir])
            .await
            .unwrap()
    }

    pub async fn last_index(&mut self, dir: &str) -> Option<i64> {
        self.int(
            "SELECT msgnum FROM voicemessages WHERE dir=? order by msgnum desc",
            &[dir],
        )
        .await
    }

    pub async fn exists(&mut self, dir: &str, msgnum: i64) -> bool {
        self.int(
            "SELECT COUNT(*) FROM voicemessages WHERE dir=? AND msgnum=?",
            &[dir, &msgnum.to_string()],
        )
        .await
            == Some(1)
    }
}

const DELETE_SQL: &str = "DELETE FROM voicemessages WHERE dir=? AND msgnum=?";

/// (mailbox, context) of `<spool>/voicemail/<context>/<mailbox>/<folder>`.
fn owner(dir: &str) -> (&str, &str) {
    let mut parts = dir.rsplit('/');
    let _folder = parts.next();
    let mailbox = parts.next().unwrap();
    let context = parts.next().unwrap();
    (mailbox, context)
}

pub fn dir(address: &str, folder: &str) -> String {
    dir_at(SPOOL, address, folder)
}

/// Asterisk's `dir` of a folder under the spool directory `spool`.
pub fn dir_at(spool: &str, address: &str, folder: &str) -> String {
    let (mailbox, context) = address.split_once('@').unwrap();
    format!("{spool}/voicemail/{context}/{mailbox}/{folder}")
}

/// The next event of `kind`, skipping others; panics after `wait`. Returns it and how long it
/// took to arrive.
pub async fn next_event(sse: &mut SseClient, kind: &str, wait: Duration) -> (Value, Duration) {
    let start = Instant::now();
    loop {
        let left = wait.saturating_sub(start.elapsed());
        let m = sse
            .next(left)
            .await
            .unwrap_or_else(|| panic!("no {kind} event within {wait:?}"));
        if m.event == kind {
            return (m.json(), start.elapsed());
        }
    }
}

/// The messages voxmail lists in a mailbox (first page).
pub async fn messages(app: &TestApp, address: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/v1/mailboxes/{address}/messages"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["items"].as_array().unwrap().clone()
}

async fn set_format(app: &TestApp, context: &str, format: &str) {
    let r = app
        .put(&format!("/v1/contexts/{context}/asterisk"))
        .json(&json!({ "format": format }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// A voxmail on a fresh database of `backend` with mailbox 1001@default in a context shared
/// with Asterisk (wav49), its event stream, and a session of Asterisk's on the database.
async fn shared_mailbox(backend: Backend) -> Option<(TestApp, SseClient, AsteriskSql)> {
    let app = TestApp::spawn_on(backend, |c| c.voicemail.spool_dir = SPOOL.into()).await?;
    app.create_context("default").await;
    app.create_mailbox("1001@default", json!({})).await;
    set_format(&app, "default", "wav49").await;
    let sse = SseClient::connect(&app.url("/v1/events"), &app.admin, None).await;
    let ast = AsteriskSql::connect(&app.config.database.url).await;
    Some((app, sse, ast))
}

async fn asterisks_statements_are_voxmails_changes(backend: Backend) {
    let Some((app, mut sse, mut ast)) = shared_mailbox(backend).await else {
        return;
    };
    let inbox = dir("1001@default", "INBOX");
    let old = dir("1001@default", "Old");
    let wait = Duration::from_secs(10);

    // Asterisk deposits: voxmail lists it, serves its audio byte for byte, counts it.
    let wav49 = fixture("hello-wav49.wav");
    ast.store(&inbox, 0, &wav49, "\"Bob\" <2000>", "1700000000-00000001")
        .await;
    let (ev, took) = next_event(&mut sse, "message.deposited", wait).await;
    eprintln!("Asterisk's deposit -> message.deposited in {took:?}");
    let first = ev["message_id"].as_str().unwrap().to_owned();
    assert_eq!(ev["counts"]["new"], 1);
    let listed = messages(&app, "1001@default").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], first.as_str());
    assert_eq!(listed[0]["folder"], "INBOX");
    assert_eq!(listed[0]["caller_id_num"], "2000");
    assert_eq!(listed[0]["caller_id_name"], "Bob");
    let audio = app
        .get(&format!(
            "/v1/mailboxes/1001@default/messages/{first}/audio"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status(), 200);
    assert_eq!(audio.bytes().await.unwrap().as_ref(), wav49.as_slice());
    // On the database audio store the recording stays in its row, once.
    let copies = ast
        .int(
            "SELECT COUNT(*) FROM audio_blobs b JOIN messages m ON b.blob_key = m.audio_key \
             WHERE m.id = ?",
            &[&first],
        )
        .await;
    assert_eq!(copies, Some(0));

    // A REST deposit: Asterisk counts it and finds a WAV49 copy in the slot after.
    let second = app
        .deposit_ok("1001@default", fixture("hello-ulaw.wav"), "audio/wav")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    next_event(&mut sse, "message.deposited", wait).await;
    assert_eq!(ast.count(&inbox).await, 2);
    assert_eq!(ast.last_index(&inbox).await, Some(1));
    let (columns, recording) = ast.retrieve(&inbox, 1).await;
    let mut columns: Vec<_> = columns.iter().map(|c| c.to_lowercase()).collect();
    columns.sort();
    assert_eq!(
        columns,
        [
            "callerid",
            "category",
            "context",
            "dir",
            "duration",
            "flag",
            "macrocontext",
            "mailboxcontext",
            "mailboxuser",
            "msg_id",
            "msgnum",
            "origtime",
            "recording"
        ]
    );
    let recording = recording.expect("a recording for Asterisk");
    assert_eq!(&recording[..4], b"RIFF");
    assert_eq!(u16::from_le_bytes([recording[20], recording[21]]), 0x31);

    // Asterisk's listener heard message 0 and left: copy to Old, then the INBOX is compacted
    // (rename 1 -> 0 deletes the heard original first). The message keeps its id.
    ast.copy(&inbox, 0, &old, 0).await;
    ast.rename(&inbox, 1, &inbox, 0).await;
    let (ev, _) = next_event(&mut sse, "message.moved", wait).await;
    assert_eq!(ev["message_id"], first.as_str());
    assert_eq!(ev["counts"]["new"], 1);
    assert_eq!(ev["counts"]["old"], 1);
    let listed = messages(&app, "1001@default").await;
    let find = |id: &str| {
        listed
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed in {listed:?}"))
            .clone()
    };
    assert_eq!(find(&first)["folder"], "Old");
    assert_eq!(find(&first)["msgnum"], 0);
    assert_eq!(find(&second)["folder"], "INBOX");
    assert_eq!(find(&second)["msgnum"], 0);
    let audio = app
        .get(&format!(
            "/v1/mailboxes/1001@default/messages/{first}/audio"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(audio.bytes().await.unwrap().as_ref(), wav49.as_slice());

    // update_msg_id (Asterisk gives a row without one an id when it reads it) works too.
    let n = ast
        .exec(
            "UPDATE voicemessages SET msg_id=? WHERE dir=? AND msgnum=?",
            &["1700000000-0000abcd", &old, "0"],
            None,
        )
        .await;
    assert_eq!(n, 1);

    // Asterisk deletes the REST deposit.
    assert_eq!(ast.delete(&inbox, 0).await, 1);
    let (ev, _) = next_event(&mut sse, "message.deleted", wait).await;
    assert_eq!(ev["message_id"], second.as_str());
    assert_eq!(ev["counts"]["new"], 0);
    let gone = app
        .get(&format!("/v1/mailboxes/1001@default/messages/{second}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    // Read but left in INBOX would be new to Asterisk and old to voxmail: refused here.
    let r = app
        .patch(&format!("/v1/mailboxes/1001@default/messages/{first}"))
        .json(&json!({ "folder": "INBOX", "read": true }))
        .send()
        .await
        .unwrap();
    crate::common::assert_problem(r, 400, "invalid-request").await;

    // voxmail's own move: one event of its own, nothing logged for the take-in.
    let r = app
        .patch(&format!("/v1/mailboxes/1001@default/messages/{first}"))
        .json(&json!({ "folder": "Work" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(ast.exists(&dir("1001@default", "Work"), 0).await);
    assert_eq!(
        ast.int("SELECT COUNT(*) FROM asterisk_changes", &[]).await,
        Some(0)
    );

    // A row that makes no sense is kept for Asterisk but not listed; the rest still is.
    ast.exec(
        "INSERT INTO voicemessages (dir, msgnum, context, callerid, origtime, duration, \
         mailboxuser, mailboxcontext, flag, msg_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
        &[
            &inbox,
            "0",
            "default",
            "",
            "1700000000",
            "1",
            "1001",
            "default",
            "",
            "x-1",
        ],
        None,
    )
    .await;
    let deadline = Instant::now() + wait;
    while ast
        .int(
            "SELECT COUNT(*) FROM messages WHERE asterisk_state = 2",
            &[],
        )
        .await
        != Some(1)
    {
        assert!(
            Instant::now() < deadline,
            "the row without audio was not refused"
        );
        let _ = sse.next(Duration::from_millis(100)).await;
    }
    let listed = messages(&app, "1001@default").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], first.as_str());
    assert_eq!(ast.count(&inbox).await, 1);
    // The dashboard's health names it, with the reason.
    let admin = voxmail::service::Admin {
        id: "test".into(),
        email: "admin@example.org".into(),
        contexts: vec![],
    };
    let d = app.services().await.admin_dashboard(&admin).await.unwrap();
    assert_eq!(d.health.asterisk.dead, 1);
    let why = d.health.asterisk.last_error.unwrap();
    assert!(
        why.contains(&inbox) && why.contains("no recording"),
        "{why}"
    );
}

async fn a_row_for_a_mailbox_voxmail_lacks_is_an_error_asterisk_logs(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend, |c| c.voicemail.spool_dir = SPOOL.into()).await
    else {
        return;
    };
    app.create_context("default").await;
    let mut ast = AsteriskSql::connect(&app.config.database.url).await;
    let inbox = dir("4040@default", "INBOX");
    let sql = format!(
        "INSERT INTO voicemessages (dir, msgnum, recording, context, callerid, origtime, \
         duration, mailboxuser, mailboxcontext, flag, msg_id) VALUES ({}, '0', NULL, 'default', \
         '', '1700000000', '1', '4040', 'default', '', 'x')",
        lit(&inbox)
    );
    let err = match &mut ast {
        AsteriskSql::Pg(c) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *c)
            .await
            .unwrap_err(),
        AsteriskSql::My(c) => sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *c)
            .await
            .unwrap_err(),
    };
    assert!(err.to_string().contains("no mailbox 4040@default"), "{err}");
}

async fn greetings_are_shared_both_ways(backend: Backend) {
    let Some((app, mut sse, mut ast)) = shared_mailbox(backend).await else {
        return;
    };
    let wait = Duration::from_secs(10);
    let greeting = |kind: &str| format!("/v1/mailboxes/1001@default/greetings/{kind}");

    // Recorded in Asterisk (VoiceMailMain's "record your unavailable message"): store_file with
    // msgnum -1 under .../unavail. voxmail serves it byte for byte.
    let wav49 = fixture("hello-wav49.wav");
    let unavail = dir("1001@default", "unavail");
    ast.store(&unavail, -1, &wav49, "", "1700000000-00000002")
        .await;
    next_event(&mut sse, "greeting.changed", wait).await;
    let r = app.get(&greeting("unavailable")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), wav49.as_slice());
    // Recorded again: replaced, not deleted.
    let mut again = wav49.clone();
    let last = again.len() - 1;
    again[last] ^= 0x55;
    ast.store(&unavail, -1, &again, "", "1700000000-00000003")
        .await;
    next_event(&mut sse, "greeting.changed", wait).await;
    let r = app.get(&greeting("unavailable")).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), again.as_slice());

    // Uploaded to voxmail: Asterisk finds its row, in its format.
    for kind in ["busy", "temp"] {
        let r = app
            .put(&greeting(kind))
            .header("content-type", "audio/wav")
            .body(fixture("hello-ulaw.wav"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        next_event(&mut sse, "greeting.changed", wait).await;
    }
    let busy = dir("1001@default", "busy");
    assert!(ast.exists(&busy, -1).await);
    let (_, recording) = ast.retrieve(&busy, -1).await;
    let recording = recording.unwrap();
    assert_eq!(u16::from_le_bytes([recording[20], recording[21]]), 0x31);

    // Asterisk removes the temporary greeting.
    assert_eq!(ast.delete(&dir("1001@default", "temp"), -1).await, 1);
    next_event(&mut sse, "greeting.deleted", wait).await;
    let r = app.get(&greeting("temp")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // voxmail removes the busy greeting: Asterisk's row goes with it.
    let r = app.delete(&greeting("busy")).send().await.unwrap();
    assert!(r.status().is_success());
    assert!(!ast.exists(&busy, -1).await);

    // Greetings are no messages: nothing listed, nothing counted.
    assert!(messages(&app, "1001@default").await.is_empty());
    let mwi = app.mwi("1001@default").await;
    assert_eq!(mwi["new"], 0);
    assert_eq!(mwi["old"], 0);
}

async fn verify(app: &TestApp, pin: &str) -> u16 {
    app.post("/v1/mailboxes/1001@default/pin/verify")
        .json(&json!({ "pin": pin }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn pins_are_shared_with_asterisks_realtime_users(backend: Backend) {
    let Some(app) = TestApp::spawn_on(backend, |c| c.voicemail.spool_dir = SPOOL.into()).await
    else {
        return;
    };
    app.create_context("default").await;
    let r = app
        .put("/v1/contexts/default/asterisk")
        .json(&json!({ "format": "wav49", "pins": "plain" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = app
        .get("/v1/contexts/default/asterisk")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["pins"], "plain");
    assert_eq!(got["format"], "wav49");
    app.create_mailbox("1001@default", json!({ "pin": "1234" }))
        .await;
    let mut ast = AsteriskSql::connect(&app.config.database.url).await;

    // res_config_odbc's realtime lookup reads the PIN as Asterisk compares it.
    let select =
        "SELECT COUNT(*) FROM mailboxes WHERE mailbox = ? AND context = ? AND password = ?";
    assert_eq!(ast.int(select, &["1001", "default", "1234"]).await, Some(1));
    assert_eq!(verify(&app, "1234").await, 204);

    // A PIN changed in VoiceMailMain (res_config_odbc's update2) is the one voxmail checks.
    let n = ast
        .exec(
            "UPDATE mailboxes SET password=? WHERE context=? AND mailbox=?",
            &["5678", "default", "1001"],
            None,
        )
        .await;
    assert_eq!(n, 1);
    assert_eq!(verify(&app, "5678").await, 204);
    assert_eq!(verify(&app, "1234").await, 403);

    // Back to hashed: the plain PIN is hashed at once and still works.
    let r = app
        .put("/v1/contexts/default/asterisk")
        .json(&json!({ "format": "wav49" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(ast.int(select, &["1001", "default", "5678"]).await, Some(0));
    assert_eq!(
        ast.int(
            "SELECT COUNT(*) FROM mailboxes WHERE mailbox = ? AND password LIKE '$argon2%'",
            &["1001"]
        )
        .await,
        Some(1)
    );
    assert_eq!(verify(&app, "5678").await, 204);
}

macro_rules! on_servers {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use crate::common::db::Backend;

                #[tokio::test]
                async fn postgres() {
                    super::$scenario(Backend::Postgres).await;
                }

                #[tokio::test]
                async fn mariadb() {
                    super::$scenario(Backend::MySql).await;
                }
            }
        )*
    };
}

async fn a_deposit_asterisks_stale_index_overwrote_comes_back(backend: Backend) {
    let Some((app, mut sse, mut ast)) = shared_mailbox(backend).await else {
        return;
    };
    let inbox = dir("1001@default", "INBOX");
    let wait = Duration::from_secs(10);

    // Asterisk read the folder's last index (none: slot 0) before voxmail's deposit committed
    // there; its store_file then deletes slot 0 and inserts its own message.
    let ours = app
        .deposit_ok("1001@default", fixture("hello-ulaw.wav"), "audio/wav")
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    next_event(&mut sse, "message.deposited", wait).await;
    ast.store(
        &inbox,
        0,
        &fixture("hello-wav49.wav"),
        "\"Ast\" <300>",
        "1700000000-0000beef",
    )
    .await;
    let (ev, _) = next_event(&mut sse, "message.deposited", wait).await;
    let theirs = ev["message_id"].as_str().unwrap().to_owned();
    assert_eq!(ev["counts"]["new"], 2, "{ev}");

    // Both are there, ours after Asterisk's, with its id, audio and Asterisk's copy.
    let listed = messages(&app, "1001@default").await;
    let num = |id: &str| {
        listed
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {listed:?}"))["msgnum"]
            .clone()
    };
    assert_eq!(num(&theirs), 0);
    assert_eq!(num(&ours), 1);
    let audio = app
        .get(&format!("/v1/mailboxes/1001@default/messages/{ours}/audio"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        audio.bytes().await.unwrap().as_ref(),
        fixture("hello-ulaw.wav").as_slice()
    );
    let (_, recording) = ast.retrieve(&inbox, 1).await;
    assert_eq!(&recording.unwrap()[..4], b"RIFF");
    assert!(taken_in(&mut ast).await);
    // No delete was announced.
    while let Some(m) = sse.next(Duration::from_millis(300)).await {
        assert_ne!(m.event, "message.deleted", "{}", m.data);
    }
}

async fn asterisks_deposits_are_mailed_by_the_side_the_context_names(backend: Backend) {
    let Some(smtp) = crate::common::smtp::SmtpServer::start().await else {
        return;
    };
    let port = smtp.port;
    let Some(app) = TestApp::spawn_on(backend, |c| {
        c.voicemail.spool_dir = SPOOL.into();
        c.email.host = "127.0.0.1".into();
        c.email.port = port;
        c.email.timeout_secs = 5;
        c.email.serveremail = "vm@pbx.example.org".into();
    })
    .await
    else {
        return;
    };
    app.create_context("default").await;
    app.create_mailbox("1001@default", json!({"email": "alice@example.org"}))
        .await;
    let mut sse = SseClient::connect(&app.url("/v1/events"), &app.admin, None).await;
    let mut ast = AsteriskSql::connect(&app.config.database.url).await;
    let wait = Duration::from_secs(10);
    let wav49 = fixture("hello-wav49.wav");
    let state = |id: String| {
        let app = &app;
        async move {
            let m: Value = app
                .get(&format!("/v1/mailboxes/1001@default/messages/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            m["email"]["status"].as_str().unwrap().to_owned()
        }
    };

    // By default Asterisk mails what it records: voxmail queues nothing.
    set_format(&app, "default", "wav49").await;
    ast.store(
        &dir("1001@default", "INBOX"),
        0,
        &wav49,
        "\"Bob\" <2000>",
        "1700000000-0000000a",
    )
    .await;
    let (ev, _) = next_event(&mut sse, "message.deposited", wait).await;
    assert_eq!(
        state(ev["message_id"].as_str().unwrap().to_owned()).await,
        "none"
    );

    // The context hands it to voxmail: mailed like its own deposits, with the recording.
    let r = app
        .put("/v1/contexts/default/asterisk")
        .json(&json!({"format": "wav49", "mail": "voxmail"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    ast.store(
        &dir("1001@default", "INBOX"),
        1,
        &wav49,
        "\"Bob\" <2000>",
        "1700000000-0000000b",
    )
    .await;
    let (ev, _) = next_event(&mut sse, "message.deposited", wait).await;
    let mails = smtp.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_tos, ["alice@example.org"]);
    let id = ev["message_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while state(id.clone()).await != "sent" {
        assert!(
            std::time::Instant::now() < deadline,
            "the mail was not recorded as sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The rows of a folder as Asterisk sees them: (msgnum, msg_id), by msgnum.
async fn folder_rows(ast: &mut AsteriskSql, dir: &str) -> Vec<(i64, String)> {
    let text = format!(
        "SELECT msgnum, msg_id FROM voicemessages WHERE dir = {} ORDER BY msgnum",
        lit(dir)
    );
    match ast {
        AsteriskSql::Pg(c) => sqlx::query_as(sqlx::AssertSqlSafe(text))
            .fetch_all(&mut *c)
            .await
            .unwrap(),
        AsteriskSql::My(c) => sqlx::query_as(sqlx::AssertSqlSafe(text))
            .fetch_all(&mut *c)
            .await
            .unwrap(),
    }
}

/// Asterisk's close_mailbox after a session in `folder`: message `k` heard and saved to
/// `save_to` (a copy at the end of that folder) or deleted; the folder compacted by renames, the
/// slots left over deleted.
async fn asterisk_close(
    ast: &mut AsteriskSql,
    spool: &str,
    address: &str,
    folder: &str,
    k: i64,
    save_to: Option<&str>,
) {
    let cur = dir_at(spool, address, folder);
    // The save happens during the session (save_to_folder copies at once); close_mailbox reads
    // the last index afterwards.
    if let Some(to) = save_to {
        let to = dir_at(spool, address, to);
        let next = ast.last_index(&to).await.unwrap_or(-1) + 1;
        ast.copy(&cur, k, &to, next).await;
    }
    let last = ast.last_index(&cur).await.unwrap_or(-1);
    let mut curmsg = -1;
    for x in 0..=last {
        if x == k {
            continue;
        }
        if !ast.exists(&cur, x).await {
            break;
        }
        curmsg += 1;
        if x != curmsg {
            ast.rename(&cur, x, &cur, curmsg).await;
        }
    }
    for x in curmsg + 1..=last {
        if ast.exists(&cur, x).await {
            ast.delete(&cur, x).await;
        }
    }
}

/// Whether voxmail has taken in every change Asterisk made.
async fn taken_in(ast: &mut AsteriskSql) -> bool {
    ast.int(
        "SELECT COUNT(*) FROM messages WHERE asterisk_state = 1",
        &[],
    )
    .await
        == Some(0)
        && ast.int("SELECT COUNT(*) FROM asterisk_changes", &[]).await == Some(0)
}

async fn a_mixed_run_ends_with_both_sides_agreeing(backend: Backend) {
    use rand::{Rng, SeedableRng};

    let Some(db) = crate::common::db::TestDb::create(backend).await else {
        return;
    };
    // voxmail's schema, then a real Asterisk on the database (when this machine has one): it
    // must count at the end what voxmail counts, under its own spool directory.
    voxmail::store::SqlStore::connect(&db.url, 1, SPOOL, "migrate")
        .await
        .unwrap()
        .close()
        .await;
    let conf = "[general]\nformat = wav49|gsm|wav\nodbcstorage = asterisk\nodbctable = voicemessages\n\n\
                [default]\n1001 => 1234,A\n1002 => 1234,B\n";
    let asterisk = crate::common::asterisk::Asterisk::start(
        crate::common::asterisk::AsteriskConfig::for_db(&db, conf, "[default]\n"),
    );
    let spool = asterisk
        .as_ref()
        .map_or(SPOOL.to_owned(), |a| a.spool_dir().display().to_string());
    let url = db.url.clone();
    let sp = spool.clone();
    let a = TestApp::spawn_with_db(Some(db), |c| c.voicemail.spool_dir = sp).await;
    // A second node on the same database takes in Asterisk's changes too.
    let sp = spool.clone();
    let b = TestApp::spawn_with(|c| {
        c.database.url = url;
        c.node_id = "test-node-b".into();
        c.voicemail.spool_dir = sp;
    })
    .await;
    a.create_context("default").await;
    set_format(&a, "default", "wav49").await;
    let boxes = ["1001@default", "1002@default"];
    for m in boxes {
        a.create_mailbox(m, json!({})).await;
    }
    let mut ast = AsteriskSql::connect(&a.config.database.url).await;
    let seed: u64 = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("mixed run seed {seed} (TEST_SEED={seed} repeats it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let wav49 = fixture("hello-wav49.wav");
    let ulaw = fixture("hello-ulaw.wav");
    // Ids of the REST deposits by msg_id: they must survive every move Asterisk makes.
    let mut rest_ids: std::collections::HashMap<String, String> = Default::default();
    let (mut deposits, mut ops) = (0, 0);
    while ops < 200 {
        let address = boxes[rng.gen_range(0..boxes.len())];
        let node = if rng.gen_bool(0.5) { &a } else { &b };
        let folder = ["INBOX", "Old", "Work"][rng.gen_range(0..3)];
        let rows = folder_rows(&mut ast, &dir_at(&spool, address, folder)).await;
        match rng.gen_range(0..10) {
            0 | 1 => {
                let next = ast
                    .last_index(&dir_at(&spool, address, "INBOX"))
                    .await
                    .unwrap_or(-1)
                    + 1;
                let msg_id = format!("1700000000-{:08x}", rng.r#gen::<u32>());
                ast.store(
                    &dir_at(&spool, address, "INBOX"),
                    next,
                    &wav49,
                    "\"Ast\" <300>",
                    &msg_id,
                )
                .await;
                deposits += 1;
            }
            2 | 3 => {
                let m = node.deposit_ok(address, ulaw.clone(), "audio/wav").await;
                rest_ids.insert(
                    m["msg_id"].as_str().unwrap().to_owned(),
                    m["id"].as_str().unwrap().to_owned(),
                );
                deposits += 1;
            }
            _ if rows.is_empty() => continue,
            op @ 4..=6 => {
                let k = rows[rng.gen_range(0..rows.len())].0;
                // A caller needs seconds to reach a message in VoiceMailMain: none deletes or
                // saves one voxmail stored under 3 s ago (that is how the take-in tells
                // Asterisk's store_file overwriting a fresh deposit, tested on its own above).
                let d = dir_at(&spool, address, folder);
                let young = ast
                    .int(
                        "SELECT COUNT(*) FROM messages WHERE dir = ? AND msgnum = ? \
                         AND created_by <> 'asterisk' AND created_at > ?",
                        &[
                            &d,
                            &k.to_string(),
                            &(voxmail::domain::now_secs() - 3).to_string(),
                        ],
                    )
                    .await;
                if young != Some(0) {
                    continue;
                }
                let to = match (op, folder) {
                    (6, _) => Some("Work"),
                    (_, "INBOX") => Some("Old"),
                    _ => None,
                };
                asterisk_close(&mut ast, &spool, address, folder, k, to).await;
            }
            _ => {
                // voxmail's side: move, mark read, or delete a message it lists in that folder.
                let listed = node
                    .get(&format!("/v1/mailboxes/{address}/messages?folder={folder}"))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap();
                let items = listed["items"].as_array().unwrap();
                if items.is_empty() {
                    continue;
                }
                let id = items[rng.gen_range(0..items.len())]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let path = format!("/v1/mailboxes/{address}/messages/{id}");
                let r = match rng.gen_range(0..3) {
                    0 => node.delete(&path).send().await.unwrap(),
                    1 => node
                        .patch(&path)
                        .json(&json!({"read": true}))
                        .send()
                        .await
                        .unwrap(),
                    _ => {
                        let to = ["INBOX", "Work", "Family"][rng.gen_range(0..3)];
                        node.patch(&path)
                            .json(&json!({"folder": to}))
                            .send()
                            .await
                            .unwrap()
                    }
                };
                // A message Asterisk moved a moment ago may be gone from its old id's folder.
                assert!(
                    r.status().is_success() || r.status() == 404,
                    "{path}: {}",
                    r.text().await.unwrap()
                );
            }
        }
        ops += 1;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !taken_in(&mut ast).await {
        assert!(
            std::time::Instant::now() < deadline,
            "Asterisk's changes were not all taken in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{ops} operations, {deposits} deposits");

    for address in boxes {
        let mut total = 0;
        for folder in ["INBOX", "Old", "Work", "Family"] {
            let rows = folder_rows(&mut ast, &dir_at(&spool, address, folder)).await;
            // Compact, as both sides keep folders.
            let nums: Vec<i64> = rows.iter().map(|r| r.0).collect();
            assert_eq!(
                nums,
                (0..rows.len() as i64).collect::<Vec<_>>(),
                "{address} {folder}"
            );
            let listed = a
                .get(&format!(
                    "/v1/mailboxes/{address}/messages?folder={folder}&limit=500"
                ))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap();
            let mut seen: Vec<(i64, String)> = listed["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["msgnum"].as_i64().unwrap(),
                        m["msg_id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            seen.sort();
            assert_eq!(seen, rows, "{address} {folder}: voxmail vs Asterisk");
            for m in listed["items"].as_array().unwrap() {
                if let Some(id) = rest_ids.get(m["msg_id"].as_str().unwrap()) {
                    assert_eq!(m["id"], id.as_str(), "a REST deposit lost its id");
                }
            }
            total += rows.len();
        }
        let mwi = a.mwi(address).await;
        let inbox = ast.count(&dir_at(&spool, address, "INBOX")).await;
        let urgent = ast.count(&dir_at(&spool, address, "Urgent")).await;
        let old = ast.count(&dir_at(&spool, address, "Old")).await;
        assert_eq!(mwi["new"], inbox + urgent, "{address}");
        assert_eq!(mwi["old"], old, "{address}");
        eprintln!("{address}: {total} messages agree");
    }
    // And the real Asterisk on the same database counts what voxmail counts.
    if let Some(asterisk) = &asterisk {
        let users = asterisk.rx("voicemail show users for default");
        for address in boxes {
            let mailbox = address.split('@').next().unwrap();
            let new: u64 = users
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(mailbox))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{mailbox} not in:\n{users}"));
            assert_eq!(
                a.mwi(address).await["new"],
                new,
                "{address}: Asterisk's NewMsg"
            );
        }
    }
    drop(b);
}

on_servers!(
    asterisks_statements_are_voxmails_changes,
    greetings_are_shared_both_ways,
    pins_are_shared_with_asterisks_realtime_users,
    a_row_for_a_mailbox_voxmail_lacks_is_an_error_asterisk_logs,
    a_mixed_run_ends_with_both_sides_agreeing,
    a_deposit_asterisks_stale_index_overwrote_comes_back,
    asterisks_deposits_are_mailed_by_the_side_the_context_names,
);
