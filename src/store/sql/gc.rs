//! What the orphan collector asks the database: which audio keys committed rows reference, and a
//! cluster-wide turn so that one node, not every node, sweeps the audio store per interval.

use std::collections::HashSet;

use super::{SqlStore, StoreError};

/// At most this many ids go into one `IN (…)` list (far below every engine's parameter limit).
const BATCH: usize = 500;

/// Where an audio key points, judged by its shape (`BlobKey::message` / `BlobKey::greeting`).
#[derive(Debug, PartialEq, Eq)]
enum Owner<'a> {
    /// `messages/<mailbox>/<message id>.…`: the messages row with that id.
    Message(&'a str),
    /// `greetings/<mailbox>/<kind>-<version>.…`: a greetings row of that mailbox.
    Greeting(&'a str),
}

fn owner(key: &str) -> Option<Owner<'_>> {
    let mut parts = key.splitn(3, '/');
    let (kind, mailbox, file) = (parts.next()?, parts.next()?, parts.next()?);
    if mailbox.is_empty() || file.contains('/') {
        return None;
    }
    match kind {
        "messages" => {
            let id = file.split('.').next()?;
            (!id.is_empty()).then_some(Owner::Message(id))
        }
        "greetings" => Some(Owner::Greeting(mailbox)),
        _ => None,
    }
}

impl SqlStore {
    /// Of `keys` (original audio keys, not renditions), the ones a committed message or greeting
    /// row names in `audio_key`. Rows are found through their primary keys (the message id and
    /// the greeting's mailbox are part of the key), so a check costs index lookups, not scans.
    pub async fn referenced_audio_keys(
        &self,
        keys: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut message_ids = Vec::new();
        let mut greeting_mailboxes = Vec::new();
        for k in keys {
            match owner(k) {
                Some(Owner::Message(id)) => message_ids.push(id.to_owned()),
                Some(Owner::Greeting(mb)) => greeting_mailboxes.push(mb.to_owned()),
                None => {}
            }
        }
        message_ids.sort();
        message_ids.dedup();
        greeting_mailboxes.sort();
        greeting_mailboxes.dedup();
        let mut found = HashSet::new();
        for (table, col, ids) in [
            ("messages", "id", &message_ids),
            ("greetings", "mailbox_id", &greeting_mailboxes),
        ] {
            for chunk in ids.chunks(BATCH) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let mut q = self.qa_owned::<(String,)>(format!(
                    "SELECT audio_key FROM {table} WHERE {col} IN ({marks})"
                ));
                for id in chunk {
                    q = q.bind(id.clone());
                }
                for (k,) in q.fetch_all(&self.pool).await? {
                    found.insert(k);
                }
            }
        }
        let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
        found.retain(|k| wanted.contains(k.as_str()));
        Ok(found)
    }

    /// Takes the cluster-wide turn of the periodic job `name` when nobody took it within the
    /// last `interval_ms`: true means this node runs it now. One conditional UPDATE decides, so
    /// two nodes never both win the same turn (the row lives in `consumer_cursors`, its
    /// `last_seq` holding the time of the last turn in Unix milliseconds).
    pub async fn take_turn(
        &self,
        name: &str,
        now_ms: i64,
        interval_ms: i64,
    ) -> Result<bool, StoreError> {
        let taken = self
            .q("UPDATE consumer_cursors SET last_seq = ? WHERE name = ? AND last_seq <= ?")
            .bind(now_ms)
            .bind(name.to_owned())
            .bind(now_ms - interval_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if taken == 1 {
            return Ok(true);
        }
        let (exists,): (i64,) = self
            .qa("SELECT COUNT(*) FROM consumer_cursors WHERE name = ?")
            .bind(name.to_owned())
            .fetch_one(&self.pool)
            .await?;
        if exists > 0 {
            return Ok(false);
        }
        match self
            .q("INSERT INTO consumer_cursors (name, last_seq) VALUES (?, ?)")
            .bind(name.to_owned())
            .bind(now_ms)
            .execute(&self.pool)
            .await
        {
            Ok(_) => Ok(true),
            // Another node created it first: that node has the turn.
            Err(e) if super::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_the_key_shape() {
        assert_eq!(
            owner("messages/mb-1/0190-abc.audio"),
            Some(Owner::Message("0190-abc"))
        );
        assert_eq!(
            owner("messages/mb-1/0190-abc.audio.opus16000"),
            Some(Owner::Message("0190-abc"))
        );
        assert_eq!(
            owner("greetings/mb-2/busy-0190.audio"),
            Some(Owner::Greeting("mb-2"))
        );
        assert_eq!(owner("tmp/x.part"), None);
        assert_eq!(owner("messages/mb/a/b"), None);
        assert_eq!(owner("messages//x.audio"), None);
    }
}
