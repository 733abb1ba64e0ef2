//! Interop with a real Asterisk 22 whose app_voicemail stores messages over ODBC (ODBC_STORAGE)
//! in the PostgreSQL and MariaDB servers the store tests use (tests/common/asterisk.rs runs it;
//! tests/asterisk/build.sh builds it once per machine). Each case starts its own Asterisk on a
//! fresh database (tests/common/db.rs) and places calls over Local channels, no SIP.
//!
//! Needs `TEST_ASTERISK_PREFIX` (the prefix build.sh prints) and `TEST_POSTGRES_URL` /
//! `TEST_MYSQL_URL`; without them the cases print a loud SKIPPED and pass, with
//! `TEST_REQUIRE_ASTERISK=1` / `TEST_REQUIRE_SQL_SERVERS=1` (CI) they fail instead.

#[path = "../common/mod.rs"]
mod common;

mod harness;
mod statements;
mod voicemail;
