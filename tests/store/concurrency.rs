//! The concurrency cases: exact msgnum/maxmsg under concurrent deposits from two nodes.

use std::collections::BTreeSet;
use std::sync::Arc;

use voxmail::domain::{Folder, MailboxAddress};
use voxmail::store::{Inserted, MailboxChanges, MessageStore, SqlStore, StoreError};

use crate::db::TestDb;
use crate::{connect, new_message, on_every_backend};

on_every_backend!(concurrent_deposits_fill_a_mailbox_exactly);

async fn mailbox(store: &SqlStore, mailbox: &str) -> voxmail::store::MailboxRecord {
    if store.get_context("acme").await.is_err() {
        let _ = store.create_context("acme", "").await;
    }
    store
        .create_mailbox(
            &MailboxAddress::new(mailbox, "acme").expect("address"),
            MailboxChanges::default(),
        )
        .await
        .expect("mailbox")
}

/// 60 deposits at once (over two nodes) into a mailbox with maxmsg 50: exactly 50 stored with
/// msgnums 0..49, the other 10 refused as full.
async fn concurrent_deposits_fill_a_mailbox_exactly(store: Arc<SqlStore>, db: &TestDb) {
    let other_node = connect(db, "node-b").await;
    let m = mailbox(&store, "100").await;
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other_node.clone()
        };
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_message(&m, new_message(Folder::Inbox), 50, None)
                .await
        }));
    }
    let (mut created, mut full) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(Inserted::Created(_)) => created += 1,
            Err(StoreError::MailboxFull { max: 50, .. }) => full += 1,
            other => panic!("unexpected outcome: {other:?}"),
        }
    }
    assert_eq!((created, full), (50, 10));
    let listed = store.list_messages(&m, None, None, 100).await.unwrap();
    let nums: BTreeSet<i64> = listed.items.iter().map(|x| x.msgnum).collect();
    assert_eq!(listed.items.len(), 50);
    assert_eq!(nums, (0..50).collect::<BTreeSet<_>>());
    assert_eq!(store.counts(&m).await.unwrap().new, 50);
    other_node.close().await;
}
