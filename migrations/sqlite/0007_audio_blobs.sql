-- The in-database audio store (`audio.store = "db"`). Audio is written here first, under its key,
-- before the row that will own it exists; the transaction that inserts the message (or sets the
-- greeting) moves the bytes into that row's `recording` column, where Asterisk's ODBC storage
-- expects them, and deletes them from here. What stays here is renditions (transcoded caches) and
-- uploads whose row never committed (the orphan collector's work).
CREATE TABLE audio_blobs (
    blob_key   VARCHAR(255) PRIMARY KEY,
    data       BLOB NOT NULL,
    byte_size  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
