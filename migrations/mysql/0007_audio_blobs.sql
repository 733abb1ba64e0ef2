-- The in-database audio store (`audio.store = "db"`). Audio is written here first, under its key,
-- before the row that will own it exists; the transaction that inserts the message (or sets the
-- greeting) moves the bytes into that row's `recording` column, where Asterisk's ODBC storage
-- expects them, and deletes them from here. What stays here is renditions (transcoded caches) and
-- uploads whose row never committed (the orphan collector's work).
-- LONGBLOB (4 GiB), like messages.recording and greetings.recording since 0001: a plain BLOB
-- holds 64 KiB. One write still has to fit the server's max_allowed_packet.
CREATE TABLE audio_blobs (
    blob_key   VARCHAR(255) PRIMARY KEY,
    data       LONGBLOB NOT NULL,
    byte_size  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
