-- The nodes that watch the IMAP mailboxes of a context (issue #6: a cluster shares the watching).
-- Each node with `watch = true` renews its row every third of `imap.watch_lease_secs`; the nodes
-- whose row is fresh share the context's mailboxes by rendezvous hashing (each mailbox to the node
-- with the highest hash of node and mailbox), so every mailbox has one IDLE connection in the
-- cluster instead of one per node. A node that stops deletes its row; one that dies is dropped
-- when its row goes stale, and the others take its mailboxes over.
CREATE TABLE imap_watch_nodes (
    context     VARCHAR(80) COLLATE "C" NOT NULL,
    node_id     VARCHAR(64) COLLATE "C" NOT NULL,
    seen_ms     BIGINT NOT NULL,
    PRIMARY KEY (context, node_id)
);

-- IMAP mailboxes voxmail is changing right now (an APPEND, STORE, MOVE or EXPUNGE from the API, on
-- any node), until the change is recorded with its own event (which removes the row) or
-- `until_ms`. A watcher that sees such a change before it is recorded does not report it as
-- made outside (`mailbox.changed`); it looks again after.
CREATE TABLE imap_busy (
    mailbox_id  VARCHAR(36) COLLATE "C" PRIMARY KEY,
    token       VARCHAR(36) COLLATE "C" NOT NULL,
    until_ms    BIGINT NOT NULL
);
