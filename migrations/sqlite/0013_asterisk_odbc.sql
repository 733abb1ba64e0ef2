-- Asterisk's app_voicemail (ODBC_STORAGE) shares the messages table on PostgreSQL and MySQL/MariaDB
-- (docs/ARCHITECTURE.md, "Asterisk ODBC storage"). SQLite is one node's embedded database that no
-- Asterisk reaches, so it only keeps the same schema: the columns, the change table and the view,
-- without the triggers that complete and log Asterisk's writes there.

-- Where Asterisk's inserts find their mailbox (see migrations/postgres/0013).
CREATE TABLE asterisk_mailboxes (
    context     VARCHAR(80) NOT NULL,
    mailbox     VARCHAR(30) NOT NULL,
    mailbox_id  VARCHAR(36) NOT NULL,
    PRIMARY KEY (context, mailbox)
);
INSERT INTO asterisk_mailboxes (context, mailbox, mailbox_id)
    SELECT context, mailbox, uniqueid FROM mailboxes;
CREATE TRIGGER mailboxes_asterisk_insert AFTER INSERT ON mailboxes FOR EACH ROW BEGIN
    INSERT INTO asterisk_mailboxes (context, mailbox, mailbox_id)
    VALUES (NEW.context, NEW.mailbox, NEW.uniqueid);
END;
CREATE TRIGGER mailboxes_asterisk_delete AFTER DELETE ON mailboxes FOR EACH ROW BEGIN
    DELETE FROM asterisk_mailboxes WHERE context = OLD.context AND mailbox = OLD.mailbox;
END;

-- 0: a complete message; 1: written by Asterisk, not taken in yet (not listed); 2: written by
-- Asterisk and refused (kept for Asterisk, not listed, on the dashboard with `asterisk_note`);
-- 3: Asterisk's row of a greeting (msgnum -1), never a message; 4: taken in, its event not
-- written yet (`asterisk_note` holds the event type; not listed until it is).
ALTER TABLE messages ADD COLUMN asterisk_state INTEGER NOT NULL DEFAULT 0;
-- 1 when `recording` holds the original recording (the in-database audio store, and Asterisk's own
-- recordings); 0 when it holds nothing or the copy made for Asterisk in its format.
ALTER TABLE messages ADD COLUMN recording_original INTEGER NOT NULL DEFAULT 0;
-- Why a row Asterisk wrote was refused (state 2), or the event a taken-in row waits for (4).
ALTER TABLE messages ADD COLUMN asterisk_note VARCHAR(255) NOT NULL DEFAULT '';
-- The msgnum Asterisk inserted the row at (-1 for voxmail's rows).
ALTER TABLE messages ADD COLUMN asterisk_slot INTEGER NOT NULL DEFAULT -1;
UPDATE messages SET recording_original = 1 WHERE recording IS NOT NULL;
CREATE INDEX messages_asterisk_state ON messages (asterisk_state, mailbox_id);

-- The Asterisk format (wav49, gsm or wav: the first of its `format=`) of a context whose Asterisk
-- nodes share this table; '' for none.
ALTER TABLE contexts ADD COLUMN asterisk_format TEXT NOT NULL DEFAULT '';
-- How the PINs of the context's mailboxes are kept in `mailboxes.password`: 'hashed' (argon2, the
-- default) or 'plain' — Asterisk's realtime voicemail users (extconfig `voicemail => odbc,…,mailboxes`)
-- compare the PIN as plain text, and write a PIN changed in VoiceMailMain there as plain text.
ALTER TABLE contexts ADD COLUMN asterisk_pins TEXT NOT NULL DEFAULT 'hashed';
-- Who mails the messages Asterisk records: 'asterisk' (itself, the default) or 'voxmail' (as it mails
-- its own deposits).
ALTER TABLE contexts ADD COLUMN asterisk_mail TEXT NOT NULL DEFAULT 'asterisk';

CREATE TABLE asterisk_changes (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- 'delete' or 'move' (the row stays, in another folder; the columns are the old ones).
    kind            VARCHAR(10) NOT NULL,
    changed_at      INTEGER NOT NULL,
    id              VARCHAR(36) NOT NULL,
    mailbox_id      VARCHAR(36) NOT NULL,
    dir             VARCHAR(255) NOT NULL,
    msgnum          INTEGER NOT NULL,
    category        VARCHAR(30) NOT NULL,
    msg_id          VARCHAR(40) NOT NULL,
    folder          VARCHAR(30) NOT NULL,
    is_read         INTEGER NOT NULL,
    origmailbox     VARCHAR(120) NOT NULL,
    exten           VARCHAR(80) NOT NULL,
    rdnis           VARCHAR(80) NOT NULL,
    priority        INTEGER NOT NULL,
    callerchan      VARCHAR(255) NOT NULL,
    caller_id_num   VARCHAR(80) NOT NULL,
    caller_id_name  VARCHAR(80) NOT NULL,
    duration_ms     INTEGER NOT NULL,
    audio_key       VARCHAR(255) NOT NULL,
    audio_format    VARCHAR(20) NOT NULL,
    codec           VARCHAR(20) NOT NULL,
    sample_rate     INTEGER NOT NULL,
    channels        INTEGER NOT NULL,
    byte_size       INTEGER NOT NULL,
    sha256          VARCHAR(64) NOT NULL,
    forwarded_from  VARCHAR(36) NULL,
    created_by      VARCHAR(64) NOT NULL,
    created_at      INTEGER NOT NULL,
    asterisk_state  INTEGER NOT NULL,
    recording_original INTEGER NOT NULL,
    -- Asterisk's columns, and the audio of a row voxmail stored moments before Asterisk deleted
    -- it (see "Numbering" in docs/ARCHITECTURE.md: store_file's DELETE of a stale slot).
    context         VARCHAR(80) NOT NULL,
    callerid        VARCHAR(80) NOT NULL,
    origtime        INTEGER NOT NULL,
    duration        INTEGER NOT NULL,
    flag            VARCHAR(30) NOT NULL,
    recording       BLOB NULL
);
CREATE INDEX asterisk_changes_mailbox ON asterisk_changes (mailbox_id, seq);

CREATE VIEW voicemessages AS
    SELECT dir, msgnum, context, macrocontext, callerid, origtime, duration, recording, flag,
           category, mailboxuser, mailboxcontext, msg_id
    FROM messages;

