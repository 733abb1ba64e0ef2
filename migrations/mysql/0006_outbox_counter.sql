-- One counter row hands out outbox seqs. A writer takes the next seq as the last step before
-- commit and holds the row lock until commit, so transactions commit in seq order and a consumer
-- that has read seq N never later finds a smaller seq appear (see docs/ARCHITECTURE.md).
CREATE TABLE outbox_counter (
    id  BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO outbox_counter (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;
