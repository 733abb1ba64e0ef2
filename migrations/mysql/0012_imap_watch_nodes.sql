-- The nodes that watch the IMAP mailboxes of a context (issue #6: a cluster shares the watching).
-- Each node with `watch = true` renews its row every third of `imap.watch_lease_secs`; the nodes
-- whose row is fresh share the context's mailboxes by rendezvous hashing (each mailbox to the node
-- with the highest hash of node and mailbox), so every mailbox has one IDLE connection in the
-- cluster instead of one per node. A node that stops deletes its row; one that dies is dropped
-- when its row goes stale, and the others take its mailboxes over.
CREATE TABLE imap_watch_nodes (
    context     VARCHAR(80) NOT NULL,
    node_id     VARCHAR(64) NOT NULL,
    seen_ms     BIGINT NOT NULL,
    PRIMARY KEY (context, node_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
