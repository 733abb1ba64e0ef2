//! The SQL of the in-database audio store (`audio.store = "db"`, see [`crate::blob::DbBlobStore`]).
//!
//! An upload is committed into `audio_blobs` under its key. The transaction that inserts the
//! message row (deposit, forward) or points a greeting at the key then *adopts* it: the bytes move
//! into the row's `recording` column, where Asterisk's ODBC storage keeps them, and the
//! `audio_blobs` row is deleted — atomically with the row, so the audio of a committed message is
//! always in its row. Reads look in the owning row first (found through its primary key, which
//! the key names), then in `audio_blobs` (renditions, and uploads whose row has not committed).

use std::sync::atomic::Ordering;

use super::{Dialect, SqlStore, Tx, is_unique_violation};
use crate::store::StoreError;

/// Where the bytes of a key are: inside the row that owns the key, or in `audio_blobs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// `messages.recording` of the message with this id (whose `audio_key` is the key).
    Message(String),
    /// `greetings.recording` of a greeting of this mailbox (whose `audio_key` is the key).
    Greeting(String),
    /// A row of `audio_blobs`.
    Loose,
}

impl AudioSource {
    /// The row a key names by its shape (`BlobKey::message`, `BlobKey::greeting`); `Loose` for
    /// anything else (renditions end up here too: their key is not the row's `audio_key`).
    pub fn owner(key: &str) -> Self {
        let mut parts = key.splitn(3, '/');
        let (Some(kind), Some(second), third) = (parts.next(), parts.next(), parts.next()) else {
            return Self::Loose;
        };
        match (kind, third) {
            // `messages/<mailbox>/<id>.<ext>`; also `messages/<id>.<ext>`.
            ("messages", _) => {
                let file = third.unwrap_or(second);
                match file.split('.').next() {
                    Some(id) if !id.is_empty() && !id.contains('/') => Self::Message(id.to_owned()),
                    _ => Self::Loose,
                }
            }
            ("greetings", Some(_)) if !second.is_empty() => Self::Greeting(second.to_owned()),
            _ => Self::Loose,
        }
    }
}

/// `LIKE` pattern matching keys that start with `prefix` (with `ESCAPE '!'`).
fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn to_i32(n: u64) -> Result<i32, StoreError> {
    i32::try_from(n).map_err(|_| StoreError::Corrupt(format!("audio offset {n} is beyond 2 GiB")))
}

impl SqlStore {
    /// Whether audio lives in the database (`audio.store = "db"`): then every transaction that
    /// inserts a message or sets a greeting moves the uploaded bytes from `audio_blobs` into the
    /// row's `recording` column.
    pub(super) fn set_audio_in_db(&self, on: bool) {
        self.audio_in_db.store(on, Ordering::Relaxed);
    }

    /// Whether audio is adopted into the rows (see [`SqlStore::set_audio_in_db`]).
    pub(super) fn audio_in_db(&self) -> bool {
        self.audio_in_db.load(Ordering::Relaxed)
    }

    /// SQLite's one writer: this process's write lock (see [`SqlStore::begin`]), for statements
    /// that run outside a transaction.
    async fn audio_write_guard(&self) -> Option<super::writer::Exclusive> {
        match self.dialect {
            Dialect::Sqlite => Some(self.writer.exclusive().await),
            Dialect::Postgres | Dialect::MySql => None,
        }
    }

    /// The server's `max_allowed_packet` on MySQL/MariaDB (one statement, so one blob written
    /// to `audio_blobs`, must fit in it); `None` on the others.
    pub(crate) async fn audio_max_packet(&self) -> Result<Option<u64>, StoreError> {
        if self.dialect != Dialect::MySql {
            return Ok(None);
        }
        let (n,): (i64,) = self
            .qa("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(u64::try_from(n).unwrap_or(0)))
    }

    /// Stores `data` under `key` in `audio_blobs`, replacing what was there. Two writers of the
    /// same key at once: one wins, the other succeeds without writing.
    pub(crate) async fn audio_put(
        &self,
        key: &str,
        data: Vec<u8>,
        created_at: i64,
    ) -> Result<(), StoreError> {
        let size = i64::try_from(data.len())
            .map_err(|_| StoreError::Corrupt("audio larger than 8 EiB".into()))?;
        let mut tx = self.begin().await?;
        self.q("DELETE FROM audio_blobs WHERE blob_key = ?")
            .bind(key.to_owned())
            .execute(&mut *tx)
            .await?;
        let res = self
            .q("INSERT INTO audio_blobs (blob_key, data, byte_size, created_at) VALUES (?, ?, ?, ?)")
            .bind(key.to_owned())
            .bind(data)
            .bind(size)
            .bind(created_at)
            .execute(&mut *tx)
            .await;
        match res {
            Ok(_) => Ok(tx.commit().await?),
            Err(e) if is_unique_violation(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Where the bytes of `key` are and their length; `None` when nowhere.
    pub(crate) async fn audio_locate(
        &self,
        key: &str,
    ) -> Result<Option<(AudioSource, u64)>, StoreError> {
        let owner = AudioSource::owner(key);
        let in_row: Option<(Option<i64>,)> = match &owner {
            AudioSource::Message(id) => {
                self.qa("SELECT LENGTH(recording) FROM messages WHERE id = ? AND audio_key = ? \
                     AND recording_original = 1")
                    .bind(id.clone())
                    .bind(key.to_owned())
                    .fetch_optional(&self.pool)
                    .await?
            }
            AudioSource::Greeting(mailbox) => {
                self.qa(
                    "SELECT LENGTH(recording) FROM greetings WHERE mailbox_id = ? AND audio_key = ?",
                )
                .bind(mailbox.clone())
                .bind(key.to_owned())
                .fetch_optional(&self.pool)
                .await?
            }
            AudioSource::Loose => None,
        };
        if let Some((Some(n),)) = in_row {
            return Ok(Some((owner, u64::try_from(n).unwrap_or(0))));
        }
        let loose: Option<(i64,)> = self
            .qa("SELECT byte_size FROM audio_blobs WHERE blob_key = ?")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        Ok(loose.map(|(n,)| (AudioSource::Loose, u64::try_from(n).unwrap_or(0))))
    }

    /// `len` bytes of `key` from byte `offset` (0-based), read from `source` (as
    /// [`SqlStore::audio_locate`] found it); `None` when the row is gone (or no longer holds
    /// `key`). The server cuts the slice (`SUBSTR`, 1-based), so only it crosses the wire.
    pub(crate) async fn audio_slice(
        &self,
        key: &str,
        source: &AudioSource,
        offset: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (from, len) = (to_i32(offset + 1)?, to_i32(len)?);
        let row: Option<(Option<Vec<u8>>,)> = match source {
            AudioSource::Message(id) => {
                self.qa(
                    "SELECT SUBSTR(recording, ?, ?) FROM messages WHERE id = ? AND audio_key = ? \
                     AND recording_original = 1",
                )
                .bind(from)
                .bind(len)
                .bind(id.clone())
                .bind(key.to_owned())
                .fetch_optional(&self.pool)
                .await?
            }
            AudioSource::Greeting(mailbox) => {
                self.qa("SELECT SUBSTR(recording, ?, ?) FROM greetings \
                     WHERE mailbox_id = ? AND audio_key = ?")
                    .bind(from)
                    .bind(len)
                    .bind(mailbox.clone())
                    .bind(key.to_owned())
                    .fetch_optional(&self.pool)
                    .await?
            }
            AudioSource::Loose => {
                self.qa("SELECT SUBSTR(data, ?, ?) FROM audio_blobs WHERE blob_key = ?")
                    .bind(from)
                    .bind(len)
                    .bind(key.to_owned())
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        Ok(row.and_then(|(b,)| b))
    }

    /// Copies the bytes of `from` (wherever they are) to `to` in `audio_blobs`, inside the
    /// database (`INSERT … SELECT`: the bytes never travel to this process). `false` when `from`
    /// does not exist. An existing `to` is kept (blobs are immutable: it holds the same bytes).
    pub(crate) async fn audio_copy(
        &self,
        from: &str,
        to: &str,
        created_at: i64,
    ) -> Result<bool, StoreError> {
        let _guard = self.audio_write_guard().await;
        // The owning row first (where the key is found once its row committed), then `audio_blobs`.
        let mut attempts: Vec<(&'static str, Option<String>)> = Vec::with_capacity(2);
        match AudioSource::owner(from) {
            AudioSource::Message(id) => attempts.push((
                "INSERT INTO audio_blobs (blob_key, data, byte_size, created_at) \
                 SELECT ?, recording, LENGTH(recording), ? FROM messages \
                 WHERE id = ? AND audio_key = ? AND recording IS NOT NULL \
                 AND recording_original = 1",
                Some(id),
            )),
            AudioSource::Greeting(mailbox) => attempts.push((
                "INSERT INTO audio_blobs (blob_key, data, byte_size, created_at) \
                 SELECT ?, recording, LENGTH(recording), ? FROM greetings \
                 WHERE mailbox_id = ? AND audio_key = ? AND recording IS NOT NULL",
                Some(mailbox),
            )),
            AudioSource::Loose => {}
        }
        attempts.push((LOOSE_COPY, None));
        for (sql, owner_id) in attempts {
            let mut q = self.q(sql).bind(to.to_owned()).bind(created_at);
            if let Some(id) = owner_id {
                q = q.bind(id);
            }
            match q.bind(from.to_owned()).execute(&self.pool).await {
                Ok(r) if r.rows_affected() > 0 => return Ok(true),
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Ok(true),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Deletes `key` from `audio_blobs` (bytes inside a message or greeting row go with the row).
    pub(crate) async fn audio_remove(&self, key: &str) -> Result<(), StoreError> {
        let _guard = self.audio_write_guard().await;
        self.q("DELETE FROM audio_blobs WHERE blob_key = ?")
            .bind(key.to_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Up to `limit` rows of `audio_blobs` whose key starts with `prefix` and sorts after
    /// `after`, in key order: (key, size, created_at in Unix seconds).
    pub(crate) async fn audio_list_page(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        Ok(self
            .qa("SELECT blob_key, byte_size, created_at FROM audio_blobs \
                 WHERE blob_key > ? AND blob_key LIKE ? ESCAPE '!' ORDER BY blob_key LIMIT ?")
            .bind(after.to_owned())
            .bind(like_prefix(prefix))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Checks `audio_blobs` can be read (for `/readyz`).
    pub(crate) async fn audio_check(&self) -> Result<(), StoreError> {
        self.q("SELECT COUNT(*) FROM audio_blobs WHERE blob_key = ''")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// In `tx`, moves the uploaded bytes of `key` from `audio_blobs` into the `recording` of the
    /// message `id` just inserted (when audio lives in the database). Fails when they are not
    /// there, so no message row is ever committed without its audio.
    pub(super) async fn adopt_message_audio(
        &self,
        tx: &mut Tx,
        id: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        if !self.audio_in_db() {
            return Ok(());
        }
        self.q(
            "UPDATE messages SET recording = (SELECT data FROM audio_blobs WHERE blob_key = ?), \
             recording_original = 1 WHERE id = ?",
        )
        .bind(key.to_owned())
        .bind(id.to_owned())
        .execute(&mut **tx)
        .await?;
        self.drop_adopted(tx, key).await
    }

    /// In `tx`, moves the uploaded bytes of `key` into the `recording` of the greeting of
    /// `mailbox` and `kind` just written (see [`SqlStore::adopt_message_audio`]).
    pub(super) async fn adopt_greeting_audio(
        &self,
        tx: &mut Tx,
        mailbox: &str,
        kind: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        if !self.audio_in_db() {
            return Ok(());
        }
        self.q(
            "UPDATE greetings SET recording = (SELECT data FROM audio_blobs WHERE blob_key = ?) \
             WHERE mailbox_id = ? AND kind = ?",
        )
        .bind(key.to_owned())
        .bind(mailbox.to_owned())
        .bind(kind.to_owned())
        .execute(&mut **tx)
        .await?;
        self.drop_adopted(tx, key).await
    }

    async fn drop_adopted(&self, tx: &mut Tx, key: &str) -> Result<(), StoreError> {
        let res = self
            .q("DELETE FROM audio_blobs WHERE blob_key = ?")
            .bind(key.to_owned())
            .execute(&mut **tx)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Corrupt(format!(
                "the audio {key} is not in audio_blobs (audio.store = \"db\"): it was removed \
                 before its row committed"
            )));
        }
        Ok(())
    }
}

/// Copies a row of `audio_blobs` to another key (binds: to, created_at, from).
const LOOSE_COPY: &str = "INSERT INTO audio_blobs (blob_key, data, byte_size, created_at) \
     SELECT ?, data, byte_size, ? FROM audio_blobs WHERE blob_key = ?";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_rows() {
        assert_eq!(
            AudioSource::owner("messages/mb/0190-ab.audio"),
            AudioSource::Message("0190-ab".into())
        );
        assert_eq!(
            AudioSource::owner("messages/0190-ab.wav"),
            AudioSource::Message("0190-ab".into())
        );
        assert_eq!(
            AudioSource::owner("messages/mb/0190-ab.audio.opus16000"),
            AudioSource::Message("0190-ab".into())
        );
        assert_eq!(
            AudioSource::owner("greetings/mb/busy-1.audio"),
            AudioSource::Greeting("mb".into())
        );
        assert_eq!(AudioSource::owner("greetings/x"), AudioSource::Loose);
        assert_eq!(AudioSource::owner("other/a/b"), AudioSource::Loose);
        assert_eq!(AudioSource::owner("messages/a/b/c"), AudioSource::Loose);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix(""), "%");
        assert_eq!(like_prefix("a_b%c!"), "a!_b!%c!!%");
    }
}
