-- Asterisk's app_voicemail (ODBC_STORAGE) shares the messages table (docs/ARCHITECTURE.md,
-- "Asterisk ODBC storage"). Asterisk's statements name only its own columns, so:
--  * `voicemessages` is Asterisk's table: a view of exactly its columns (its `SELECT *` writes every
--    column into msgNNNN.txt and fails on a NULL), insertable and updatable through to `messages`;
--  * every column of ours gets a default, and a trigger completes a row Asterisk inserts (it never
--    names `id`): its id (a UUIDv7), the mailbox by (mailboxcontext, mailboxuser), the folder from `dir`;
--    `asterisk_state = 1` marks it for voxmail to take in (metadata, audio, id, event);
--  * a row Asterisk deletes, or moves to another folder, is copied to `asterisk_changes` first, so
--    voxmail can tell a move (Asterisk copies, then deletes the original) from a delete.
-- voxmail's own sessions set `@voxmail_writer`, so its changes (which write their own events) are
-- not logged.
-- A MySQL view of one table without aggregates is insertable and updatable, and the table's own
-- triggers run for writes through it. The defaults matter: an insert through a view must name every
-- column of the table that has none.

-- InnoDB's foreign key check takes a shared lock on the mailbox row, and so does any read inside a
-- trigger, at every isolation level. voxmail holds that row exclusively while it changes the
-- mailbox (its per-mailbox lock and MWI version), so Asterisk's INSERT — autocommitted, never
-- retried — could be chosen as a deadlock victim and the caller's message lost. So on MySQL the
-- trigger finds the mailbox in `asterisk_mailboxes`, which voxmail only writes when a mailbox is
-- created or deleted, and `messages` has no foreign key to `mailboxes` (voxmail deletes a
-- mailbox's messages before the mailbox, in one transaction). PostgreSQL needs neither: its key
-- check takes FOR KEY SHARE, which the version update (FOR NO KEY UPDATE) does not block.
ALTER TABLE messages DROP FOREIGN KEY messages_mailbox_id_fk;
CREATE TABLE asterisk_mailboxes (
    context     VARCHAR(80) NOT NULL,
    mailbox     VARCHAR(30) NOT NULL,
    mailbox_id  VARCHAR(36) NOT NULL,
    PRIMARY KEY (context, mailbox)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
INSERT INTO asterisk_mailboxes (context, mailbox, mailbox_id)
    SELECT context, mailbox, uniqueid FROM mailboxes;
CREATE TRIGGER mailboxes_asterisk_insert AFTER INSERT ON mailboxes FOR EACH ROW
    INSERT INTO asterisk_mailboxes (context, mailbox, mailbox_id)
    VALUES (NEW.context, NEW.mailbox, NEW.uniqueid);
CREATE TRIGGER mailboxes_asterisk_delete AFTER DELETE ON mailboxes FOR EACH ROW
    DELETE FROM asterisk_mailboxes WHERE context = OLD.context AND mailbox = OLD.mailbox;

ALTER TABLE messages
    MODIFY id VARCHAR(36) NOT NULL DEFAULT '',
    MODIFY mailbox_id VARCHAR(36) NOT NULL DEFAULT '',
    MODIFY origtime BIGINT NOT NULL DEFAULT 0,
    MODIFY duration BIGINT NOT NULL DEFAULT 0,
    MODIFY mailboxuser VARCHAR(30) NOT NULL DEFAULT '',
    MODIFY mailboxcontext VARCHAR(80) NOT NULL DEFAULT '',
    MODIFY msg_id VARCHAR(40) NOT NULL DEFAULT '',
    MODIFY folder VARCHAR(30) NOT NULL DEFAULT '',
    MODIFY duration_ms BIGINT NOT NULL DEFAULT 0,
    MODIFY audio_key VARCHAR(255) NOT NULL DEFAULT '',
    MODIFY audio_format VARCHAR(20) NOT NULL DEFAULT '',
    MODIFY codec VARCHAR(20) NOT NULL DEFAULT '',
    MODIFY sample_rate BIGINT NOT NULL DEFAULT 0,
    MODIFY channels BIGINT NOT NULL DEFAULT 0,
    MODIFY byte_size BIGINT NOT NULL DEFAULT 0,
    MODIFY sha256 VARCHAR(64) NOT NULL DEFAULT '',
    MODIFY created_at BIGINT NOT NULL DEFAULT 0,
    MODIFY updated_at BIGINT NOT NULL DEFAULT 0,
    -- 0: a complete message; 1: written by Asterisk, not taken in yet (not listed); 2: written by
    -- Asterisk and refused (kept for Asterisk, not listed, on the dashboard with `asterisk_note`);
    -- 3: Asterisk's row of a greeting (msgnum -1), never a message; 4: taken in, its event not
    -- written yet (`asterisk_note` holds the event type; not listed until it is).
    ADD COLUMN asterisk_state BIGINT NOT NULL DEFAULT 0,
    -- 1 when `recording` holds the original recording (the in-database audio store, and
    -- Asterisk's own recordings); 0 when it holds nothing or the copy made for Asterisk.
    ADD COLUMN recording_original BIGINT NOT NULL DEFAULT 0,
    -- Why a row Asterisk wrote was refused (state 2), or the event a taken-in row waits for (4).
    ADD COLUMN asterisk_note VARCHAR(255) NOT NULL DEFAULT '',
    -- The msgnum Asterisk inserted the row at (-1 for voxmail's rows): tells its store_file's
    -- DELETE of a slot from a rename's.
    ADD COLUMN asterisk_slot BIGINT NOT NULL DEFAULT -1;
UPDATE messages SET recording_original = 1 WHERE recording IS NOT NULL;
CREATE INDEX messages_asterisk_state ON messages (asterisk_state, mailbox_id);

-- The Asterisk format (wav49, gsm or wav: the first of its `format=`) of a context whose Asterisk
-- nodes share this table; '' for none. Messages of such a context carry a copy in that format in
-- `recording`.
ALTER TABLE contexts ADD COLUMN asterisk_format VARCHAR(10) NOT NULL DEFAULT '';
-- How the PINs of the context's mailboxes are kept in `mailboxes.password`: 'hashed' (argon2, the
-- default) or 'plain' — Asterisk's realtime voicemail users (extconfig `voicemail => odbc,…,mailboxes`)
-- compare the PIN as plain text, and write a PIN changed in VoiceMailMain there as plain text.
ALTER TABLE contexts ADD COLUMN asterisk_pins VARCHAR(10) NOT NULL DEFAULT 'hashed';
-- Who mails the messages Asterisk records: 'asterisk' (itself, the default) or 'voxmail' (as it mails
-- its own deposits).
ALTER TABLE contexts ADD COLUMN asterisk_mail VARCHAR(10) NOT NULL DEFAULT 'asterisk';

CREATE TABLE asterisk_changes (
    seq             BIGINT AUTO_INCREMENT PRIMARY KEY,
    -- 'delete' or 'move' (the row stays, in another folder; the columns are the old ones).
    kind            VARCHAR(10) NOT NULL,
    changed_at      BIGINT NOT NULL,
    id              VARCHAR(36) NOT NULL,
    mailbox_id      VARCHAR(36) NOT NULL,
    dir             VARCHAR(255) NOT NULL,
    msgnum          BIGINT NOT NULL,
    category        VARCHAR(30) NOT NULL,
    msg_id          VARCHAR(40) NOT NULL,
    folder          VARCHAR(30) NOT NULL,
    is_read         BIGINT NOT NULL,
    origmailbox     VARCHAR(120) NOT NULL,
    exten           VARCHAR(80) NOT NULL,
    rdnis           VARCHAR(80) NOT NULL,
    priority        BIGINT NOT NULL,
    callerchan      VARCHAR(255) NOT NULL,
    caller_id_num   VARCHAR(80) NOT NULL,
    caller_id_name  VARCHAR(80) NOT NULL,
    duration_ms     BIGINT NOT NULL,
    audio_key       VARCHAR(255) NOT NULL,
    audio_format    VARCHAR(20) NOT NULL,
    codec           VARCHAR(20) NOT NULL,
    sample_rate     BIGINT NOT NULL,
    channels        BIGINT NOT NULL,
    byte_size       BIGINT NOT NULL,
    sha256          VARCHAR(64) NOT NULL,
    forwarded_from  VARCHAR(36) NULL,
    created_by      VARCHAR(64) NOT NULL,
    created_at      BIGINT NOT NULL,
    asterisk_state  BIGINT NOT NULL,
    recording_original BIGINT NOT NULL,
    -- Asterisk's columns, and the audio of a row voxmail stored moments before Asterisk deleted
    -- it (see "Numbering" in docs/ARCHITECTURE.md: store_file's DELETE of a stale slot).
    context         VARCHAR(80) NOT NULL,
    callerid        VARCHAR(80) NOT NULL,
    origtime        BIGINT NOT NULL,
    duration        BIGINT NOT NULL,
    flag            VARCHAR(30) NOT NULL,
    recording       LONGBLOB NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX asterisk_changes_mailbox ON asterisk_changes (mailbox_id, seq);

CREATE VIEW voicemessages AS
    SELECT dir, msgnum, context, macrocontext, callerid, origtime, duration, recording, flag,
           category, mailboxuser, mailboxcontext, msg_id
    FROM messages;

-- voxmail's sessions set @voxmail_writer (MySQL has no other per-session marker a trigger can read).
CREATE TRIGGER messages_asterisk_insert BEFORE INSERT ON messages FOR EACH ROW
BEGIN
    DECLARE mbx VARCHAR(36);
    IF NEW.id = '' THEN
        SET mbx = (SELECT mailbox_id FROM asterisk_mailboxes
            WHERE context = NEW.mailboxcontext AND mailbox = NEW.mailboxuser);
        IF mbx IS NULL THEN
            SET @voxmail_error = CONCAT('voxmail: no mailbox ', NEW.mailboxuser, '@',
                NEW.mailboxcontext, ' for ', NEW.dir, ' (create it in voxmail)');
            SIGNAL SQLSTATE '23000' SET MESSAGE_TEXT = @voxmail_error;
        END IF;
        -- A UUIDv7 (ms time, then random), as voxmail's own ids: listings sort by id.
        SET @voxmail_ms = LPAD(HEX(FLOOR(UNIX_TIMESTAMP(NOW(3)) * 1000)), 12, '0');
        SET @voxmail_rnd = MD5(CONCAT(UUID(), RAND()));
        SET NEW.id = LOWER(CONCAT(SUBSTR(@voxmail_ms, 1, 8), '-', SUBSTR(@voxmail_ms, 9, 4), '-7',
            SUBSTR(@voxmail_rnd, 1, 3), '-8', SUBSTR(@voxmail_rnd, 4, 3), '-',
            SUBSTR(@voxmail_rnd, 7, 12)));
        SET NEW.mailbox_id = mbx;
        SET NEW.context = COALESCE(NEW.context, '');
        SET NEW.macrocontext = COALESCE(NEW.macrocontext, '');
        SET NEW.callerid = COALESCE(NEW.callerid, '');
        SET NEW.flag = COALESCE(NEW.flag, '');
        SET NEW.category = COALESCE(NEW.category, '');
        SET NEW.msg_id = COALESCE(NEW.msg_id, '');
        SET NEW.origtime = COALESCE(NEW.origtime, 0);
        SET NEW.duration = COALESCE(NEW.duration, 0);
        SET NEW.duration_ms = NEW.duration * 1000;
        SET NEW.created_by = 'asterisk';
        SET NEW.created_at = UNIX_TIMESTAMP();
        SET NEW.updated_at = NEW.created_at;
        SET NEW.asterisk_state = 1;
        SET NEW.recording_original = 1;
        SET NEW.asterisk_slot = NEW.msgnum;
    END IF;
    SET NEW.folder = SUBSTRING_INDEX(NEW.dir, '/', -1);
END;

CREATE TRIGGER messages_asterisk_update BEFORE UPDATE ON messages FOR EACH ROW
BEGIN
    IF NEW.dir <> OLD.dir THEN
        SET NEW.folder = SUBSTRING_INDEX(NEW.dir, '/', -1);
    END IF;
END;

CREATE TRIGGER messages_asterisk_moved AFTER UPDATE ON messages FOR EACH ROW
BEGIN
    IF @voxmail_writer IS NULL AND NEW.folder <> OLD.folder THEN
        INSERT INTO asterisk_changes (kind, changed_at, id, mailbox_id, dir, msgnum, category, msg_id,
        folder, is_read, origmailbox, exten, rdnis, priority, callerchan, caller_id_num,
        caller_id_name, duration_ms, audio_key, audio_format, codec, sample_rate, channels,
        byte_size, sha256, forwarded_from, created_by, created_at, asterisk_state,
        recording_original, context, callerid, origtime, duration, flag, recording)
        VALUES ('move', UNIX_TIMESTAMP(), OLD.id, OLD.mailbox_id, OLD.dir, OLD.msgnum,
        OLD.category, OLD.msg_id, OLD.folder, OLD.is_read, OLD.origmailbox, OLD.exten, OLD.rdnis,
        OLD.priority, OLD.callerchan, OLD.caller_id_num, OLD.caller_id_name, OLD.duration_ms,
        OLD.audio_key, OLD.audio_format, OLD.codec, OLD.sample_rate, OLD.channels, OLD.byte_size,
        OLD.sha256, OLD.forwarded_from, OLD.created_by, OLD.created_at, OLD.asterisk_state,
        OLD.recording_original, OLD.context, OLD.callerid, OLD.origtime, OLD.duration, OLD.flag,
        NULL);
    END IF;
END;

CREATE TRIGGER messages_asterisk_deleted AFTER DELETE ON messages FOR EACH ROW
BEGIN
    IF @voxmail_writer IS NULL THEN
        INSERT INTO asterisk_changes (kind, changed_at, id, mailbox_id, dir, msgnum, category, msg_id,
        folder, is_read, origmailbox, exten, rdnis, priority, callerchan, caller_id_num,
        caller_id_name, duration_ms, audio_key, audio_format, codec, sample_rate, channels,
        byte_size, sha256, forwarded_from, created_by, created_at, asterisk_state,
        recording_original, context, callerid, origtime, duration, flag, recording)
        VALUES ('delete', UNIX_TIMESTAMP(), OLD.id, OLD.mailbox_id, OLD.dir, OLD.msgnum,
        OLD.category, OLD.msg_id, OLD.folder, OLD.is_read, OLD.origmailbox, OLD.exten, OLD.rdnis,
        OLD.priority, OLD.callerchan, OLD.caller_id_num, OLD.caller_id_name, OLD.duration_ms,
        OLD.audio_key, OLD.audio_format, OLD.codec, OLD.sample_rate, OLD.channels, OLD.byte_size,
        OLD.sha256, OLD.forwarded_from, OLD.created_by, OLD.created_at, OLD.asterisk_state,
        OLD.recording_original, OLD.context, OLD.callerid, OLD.origtime, OLD.duration, OLD.flag,
        CASE WHEN OLD.asterisk_state = 0 AND OLD.created_by <> 'asterisk'
            AND OLD.created_at >= UNIX_TIMESTAMP() - 5 THEN OLD.recording END);
    END IF;
END;
