-- The last MWI counts observed in the IMAP folders of a mailbox whose context keeps its messages in
-- IMAP (issue #7). Written in the transaction that writes the outbox event of the change (an API
-- change, or one a watcher saw a mail client make), so the MWI pusher, the event streams and every
-- node read the same last known counts; while the IMAP server is down they stay as they were,
-- never guessed.
CREATE TABLE imap_counts (
    mailbox_id  VARCHAR(36) PRIMARY KEY REFERENCES mailboxes(uniqueid),
    new_count   BIGINT NOT NULL,
    old_count   BIGINT NOT NULL,
    urgent_new  BIGINT NOT NULL,
    urgent_old  BIGINT NOT NULL,
    observed_ms BIGINT NOT NULL
);
