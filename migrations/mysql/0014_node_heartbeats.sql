-- One row per node, rewritten by every /readyz (issue #15): a committed write is the only honest
-- proof that the node can write to the database (a read-only replica, a full disk, a lost
-- connection all fail it). `beat_ms` is when it last succeeded, for an operator's eye.
CREATE TABLE node_heartbeats (
    node_id     VARCHAR(64) PRIMARY KEY,
    beat_ms     BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
