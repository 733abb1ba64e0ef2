-- The in-database audio store (`audio.store = "db"`). Audio is written here first, under its key,
-- before the row that will own it exists; the transaction that inserts the message (or sets the
-- greeting) moves the bytes into that row's `recording` column, where Asterisk's ODBC storage
-- expects them, and deletes them from here. What stays here is renditions (transcoded caches) and
-- uploads whose row never committed (the orphan collector's work).
CREATE TABLE audio_blobs (
    blob_key   VARCHAR(255) PRIMARY KEY,
    data       BYTEA NOT NULL,
    byte_size  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Audio does not compress: kept out of line uncompressed, substring() reads only the TOAST chunks
-- it needs, so a recording is streamed in slices without the server reading all of it each time.
ALTER TABLE audio_blobs ALTER COLUMN data SET STORAGE EXTERNAL;
ALTER TABLE messages ALTER COLUMN recording SET STORAGE EXTERNAL;
ALTER TABLE greetings ALTER COLUMN recording SET STORAGE EXTERNAL;
