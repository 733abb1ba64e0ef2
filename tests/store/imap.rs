//! What the IMAP watchers rely on in SQL: the last observed counts of an IMAP mailbox, and the
//! busy mark that keeps a watcher from reporting voxmail's own change as one made outside.

use std::sync::Arc;

use voxmail::domain::{MailboxAddress, MwiCounts, now_ms};
use voxmail::store::{ImapChange, MailboxChanges, Recorded, SqlStore};

use crate::db::TestDb;
use crate::on_every_backend;

on_every_backend!(a_busy_mark_defers_observations_until_the_change_is_recorded);

fn new(n: u32) -> MwiCounts {
    MwiCounts {
        new: n,
        old: 0,
        urgent_new: 0,
        urgent_old: 0,
        version: 0,
    }
}

async fn a_busy_mark_defers_observations_until_the_change_is_recorded(
    store: Arc<SqlStore>,
    _db: &TestDb,
) {
    store.create_context("acme", "").await.unwrap();
    let a = store
        .create_mailbox(
            &MailboxAddress::new("100", "acme").unwrap(),
            MailboxChanges::default(),
        )
        .await
        .unwrap();
    let observe = |n: u32| {
        let (store, a) = (store.clone(), a.clone());
        async move {
            store
                .record_imap_counts(
                    &a,
                    new(n),
                    ImapChange::Observed {
                        read_at_ms: now_ms(),
                    },
                )
                .await
                .unwrap()
        }
    };
    assert!(
        matches!(observe(0).await, Recorded::Written(_)),
        "first look"
    );
    assert_eq!(observe(0).await, Recorded::Unchanged);

    // voxmail starts a change; a watcher sees its result before it is recorded: deferred.
    store
        .mark_imap_busy(a.id, "change-1", now_ms() + 30_000)
        .await
        .unwrap();
    assert_eq!(observe(1).await, Recorded::Deferred);
    assert_eq!(
        observe(0).await,
        Recorded::Unchanged,
        "nothing new is just that"
    );
    // A second change marks it too; the first one giving up leaves the second's mark.
    store
        .mark_imap_busy(a.id, "change-2", now_ms() + 30_000)
        .await
        .unwrap();
    store.clear_imap_busy(a.id, "change-1").await.unwrap();
    assert_eq!(observe(1).await, Recorded::Deferred);

    // The change's own recording: written, with its event, and the mark is gone.
    let made = store
        .record_imap_counts(
            &a,
            new(1),
            ImapChange::Made {
                event_type: "message.deposited",
                message_id: None,
                notify: None,
                forwarded_by: None,
            },
        )
        .await
        .unwrap();
    let Recorded::Written(c) = made else {
        panic!("a change voxmail made is always written: {made:?}")
    };
    assert_eq!(c.new, 1);
    assert_eq!(observe(1).await, Recorded::Unchanged);
    assert!(
        matches!(observe(2).await, Recorded::Written(c) if c.new == 2),
        "a mail client's change after it is reported"
    );

    // A mark past its time (its node died) defers nothing.
    store
        .mark_imap_busy(a.id, "change-3", now_ms() - 1)
        .await
        .unwrap();
    assert!(matches!(observe(3).await, Recorded::Written(c) if c.new == 3));
}
