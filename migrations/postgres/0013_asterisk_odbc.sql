-- Asterisk's app_voicemail (ODBC_STORAGE) shares the messages table (docs/ARCHITECTURE.md,
-- "Asterisk ODBC storage"). Asterisk's statements name only its own columns, so:
--  * `voicemessages` is Asterisk's table: a view of exactly its columns (its `SELECT *` writes every
--    column into msgNNNN.txt and fails on a NULL), insertable and updatable through to `messages`;
--  * every column of ours gets a default, and a trigger completes a row Asterisk inserts (it never
--    names `id`): its id (a UUIDv7), the mailbox by (mailboxcontext, mailboxuser), the folder from `dir`;
--    `asterisk_state = 1` marks it for voxmail to take in (metadata, audio, id, event);
--  * a row Asterisk deletes, or moves to another folder, is copied to `asterisk_changes` first, so
--    voxmail can tell a move (Asterisk copies, then deletes the original) from a delete.
-- voxmail's own sessions set `voxmail.writer`, so its changes (which write their own events) are
-- not logged.

-- Asterisk's inserts find their mailbox here, by (context, mailbox). voxmail writes it only when a
-- mailbox is created or deleted: on MySQL a read of `mailboxes` inside the trigger would wait for
-- the mailbox row voxmail holds while it changes the mailbox (see migrations/mysql/0013); kept the
-- same on every database.
CREATE TABLE asterisk_mailboxes (
    context     VARCHAR(80) COLLATE "C" NOT NULL,
    mailbox     VARCHAR(30) COLLATE "C" NOT NULL,
    mailbox_id  VARCHAR(36) COLLATE "C" NOT NULL,
    PRIMARY KEY (context, mailbox)
);
INSERT INTO asterisk_mailboxes (context, mailbox, mailbox_id)
    SELECT context, mailbox, uniqueid FROM mailboxes;
CREATE FUNCTION voxmail_asterisk_mailboxes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO asterisk_mailboxes (context, mailbox, mailbox_id)
            VALUES (NEW.context, NEW.mailbox, NEW.uniqueid);
    ELSE
        DELETE FROM asterisk_mailboxes WHERE context = OLD.context AND mailbox = OLD.mailbox;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER mailboxes_asterisk AFTER INSERT OR DELETE ON mailboxes
    FOR EACH ROW EXECUTE FUNCTION voxmail_asterisk_mailboxes();

ALTER TABLE messages ALTER COLUMN id SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN mailbox_id SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN origtime SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN duration SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN mailboxuser SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN mailboxcontext SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN msg_id SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN folder SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN duration_ms SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN audio_key SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN audio_format SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN codec SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN sample_rate SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN channels SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN byte_size SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN sha256 SET DEFAULT '';
ALTER TABLE messages ALTER COLUMN created_at SET DEFAULT 0;
ALTER TABLE messages ALTER COLUMN updated_at SET DEFAULT 0;
-- 0: a complete message; 1: written by Asterisk, not taken in yet (not listed); 2: written by
-- Asterisk and refused (kept for Asterisk, not listed, on the dashboard with `asterisk_note`);
-- 3: Asterisk's row of a greeting (msgnum -1), never a message; 4: taken in, its event not
-- written yet (`asterisk_note` holds the event type; not listed until it is).
ALTER TABLE messages ADD COLUMN asterisk_state BIGINT NOT NULL DEFAULT 0;
-- 1 when `recording` holds the original recording (the in-database audio store, and Asterisk's own
-- recordings); 0 when it holds nothing or the copy made for Asterisk in its format.
ALTER TABLE messages ADD COLUMN recording_original BIGINT NOT NULL DEFAULT 0;
-- Why a row Asterisk wrote was refused (state 2), or the event a taken-in row waits for (4).
ALTER TABLE messages ADD COLUMN asterisk_note VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '';
-- The msgnum Asterisk inserted the row at (-1 for voxmail's rows): tells its store_file's DELETE
-- of a slot from a rename's.
ALTER TABLE messages ADD COLUMN asterisk_slot BIGINT NOT NULL DEFAULT -1;
UPDATE messages SET recording_original = 1 WHERE recording IS NOT NULL;
CREATE INDEX messages_asterisk_state ON messages (asterisk_state, mailbox_id);

-- The Asterisk format (wav49, gsm or wav: the first of its `format=`) of a context whose Asterisk
-- nodes share this table; '' for none. Messages of such a context carry a copy in that format in
-- `recording`.
ALTER TABLE contexts ADD COLUMN asterisk_format VARCHAR(10) COLLATE "C" NOT NULL DEFAULT '';
-- How the PINs of the context's mailboxes are kept in `mailboxes.password`: 'hashed' (argon2, the
-- default) or 'plain' — Asterisk's realtime voicemail users (extconfig `voicemail => odbc,…,mailboxes`)
-- compare the PIN as plain text, and write a PIN changed in VoiceMailMain there as plain text.
ALTER TABLE contexts ADD COLUMN asterisk_pins VARCHAR(10) COLLATE "C" NOT NULL DEFAULT 'hashed';
-- Who mails the messages Asterisk records: 'asterisk' (itself, the default) or 'voxmail' (as it mails
-- its own deposits).
ALTER TABLE contexts ADD COLUMN asterisk_mail VARCHAR(10) COLLATE "C" NOT NULL DEFAULT 'asterisk';

CREATE TABLE asterisk_changes (
    seq             BIGSERIAL PRIMARY KEY,
    -- 'delete' or 'move' (the row stays, in another folder; the columns are the old ones).
    kind            VARCHAR(10) COLLATE "C" NOT NULL,
    changed_at      BIGINT NOT NULL,
    id              VARCHAR(36) COLLATE "C" NOT NULL,
    mailbox_id      VARCHAR(36) COLLATE "C" NOT NULL,
    dir             VARCHAR(255) COLLATE "C" NOT NULL,
    msgnum          BIGINT NOT NULL,
    category        VARCHAR(30) COLLATE "C" NOT NULL,
    msg_id          VARCHAR(40) COLLATE "C" NOT NULL,
    folder          VARCHAR(30) COLLATE "C" NOT NULL,
    is_read         BIGINT NOT NULL,
    origmailbox     VARCHAR(120) COLLATE "C" NOT NULL,
    exten           VARCHAR(80) COLLATE "C" NOT NULL,
    rdnis           VARCHAR(80) COLLATE "C" NOT NULL,
    priority        BIGINT NOT NULL,
    callerchan      VARCHAR(255) COLLATE "C" NOT NULL,
    caller_id_num   VARCHAR(80) COLLATE "C" NOT NULL,
    caller_id_name  VARCHAR(80) COLLATE "C" NOT NULL,
    duration_ms     BIGINT NOT NULL,
    audio_key       VARCHAR(255) COLLATE "C" NOT NULL,
    audio_format    VARCHAR(20) COLLATE "C" NOT NULL,
    codec           VARCHAR(20) COLLATE "C" NOT NULL,
    sample_rate     BIGINT NOT NULL,
    channels        BIGINT NOT NULL,
    byte_size       BIGINT NOT NULL,
    sha256          VARCHAR(64) COLLATE "C" NOT NULL,
    forwarded_from  VARCHAR(36) COLLATE "C" NULL,
    created_by      VARCHAR(64) COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    asterisk_state  BIGINT NOT NULL,
    recording_original BIGINT NOT NULL,
    -- Asterisk's columns, and the audio of a row voxmail stored moments before Asterisk deleted
    -- it (see "Numbering" in docs/ARCHITECTURE.md: store_file's DELETE of a stale slot).
    context         VARCHAR(80) COLLATE "C" NOT NULL,
    callerid        VARCHAR(80) COLLATE "C" NOT NULL,
    origtime        BIGINT NOT NULL,
    duration        BIGINT NOT NULL,
    flag            VARCHAR(30) COLLATE "C" NOT NULL,
    recording       BYTEA NULL
);
CREATE INDEX asterisk_changes_mailbox ON asterisk_changes (mailbox_id, seq);

CREATE VIEW voicemessages AS
    SELECT dir, msgnum, context, macrocontext, callerid, origtime, duration, recording, flag,
           category, mailboxuser, mailboxcontext, msg_id
    FROM messages;

CREATE FUNCTION voxmail_asterisk_writer() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT COALESCE(current_setting('voxmail.writer', true), '') = ''
$$;

CREATE FUNCTION voxmail_messages_before() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mbx VARCHAR(36);
    ms TEXT;
    rnd TEXT;
BEGIN
    IF TG_OP = 'INSERT' AND NEW.id = '' THEN
        SELECT mailbox_id INTO mbx FROM asterisk_mailboxes
            WHERE context = NEW.mailboxcontext AND mailbox = NEW.mailboxuser;
        IF mbx IS NULL THEN
            RAISE EXCEPTION 'voxmail: no mailbox %@% for % (create it in voxmail)',
                NEW.mailboxuser, NEW.mailboxcontext, NEW.dir USING ERRCODE = '23503';
        END IF;
        -- A UUIDv7 (ms time, then random), as voxmail's own ids: listings sort by id.
        ms := lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0');
        rnd := replace(gen_random_uuid()::text, '-', '');
        NEW.id := substr(ms, 1, 8) || '-' || substr(ms, 9, 4) || '-7' || substr(rnd, 1, 3)
            || '-8' || substr(rnd, 4, 3) || '-' || substr(rnd, 7, 12);
        NEW.mailbox_id := mbx;
        NEW.context := COALESCE(NEW.context, '');
        NEW.macrocontext := COALESCE(NEW.macrocontext, '');
        NEW.callerid := COALESCE(NEW.callerid, '');
        NEW.flag := COALESCE(NEW.flag, '');
        NEW.category := COALESCE(NEW.category, '');
        NEW.msg_id := COALESCE(NEW.msg_id, '');
        NEW.origtime := COALESCE(NEW.origtime, 0);
        NEW.duration := COALESCE(NEW.duration, 0);
        NEW.duration_ms := NEW.duration * 1000;
        NEW.created_by := 'asterisk';
        NEW.created_at := extract(epoch from now())::bigint;
        NEW.updated_at := NEW.created_at;
        NEW.asterisk_state := 1;
        NEW.recording_original := 1;
        NEW.asterisk_slot := NEW.msgnum;
    END IF;
    IF TG_OP = 'INSERT' OR NEW.dir <> OLD.dir THEN
        NEW.folder := substring(NEW.dir from '[^/]*$');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_asterisk_before BEFORE INSERT OR UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION voxmail_messages_before();

CREATE FUNCTION voxmail_messages_after() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k VARCHAR(10);
BEGIN
    IF NOT voxmail_asterisk_writer() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        k := 'delete';
    ELSIF NEW.folder <> OLD.folder THEN
        k := 'move';
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO asterisk_changes (kind, changed_at, id, mailbox_id, dir, msgnum, category, msg_id,
        folder, is_read, origmailbox, exten, rdnis, priority, callerchan, caller_id_num,
        caller_id_name, duration_ms, audio_key, audio_format, codec, sample_rate, channels,
        byte_size, sha256, forwarded_from, created_by, created_at, asterisk_state,
        recording_original, context, callerid, origtime, duration, flag, recording)
    VALUES (k, extract(epoch from now())::bigint, OLD.id, OLD.mailbox_id, OLD.dir, OLD.msgnum,
        OLD.category, OLD.msg_id, OLD.folder, OLD.is_read, OLD.origmailbox, OLD.exten, OLD.rdnis,
        OLD.priority, OLD.callerchan, OLD.caller_id_num, OLD.caller_id_name, OLD.duration_ms,
        OLD.audio_key, OLD.audio_format, OLD.codec, OLD.sample_rate, OLD.channels, OLD.byte_size,
        OLD.sha256, OLD.forwarded_from, OLD.created_by, OLD.created_at, OLD.asterisk_state,
        OLD.recording_original, OLD.context, OLD.callerid, OLD.origtime, OLD.duration, OLD.flag,
        CASE WHEN k = 'delete' AND OLD.asterisk_state = 0 AND OLD.created_by <> 'asterisk'
            AND OLD.created_at >= extract(epoch from now())::bigint - 5 THEN OLD.recording END);
    RETURN NULL;
END $$;
CREATE TRIGGER messages_asterisk_after AFTER UPDATE OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION voxmail_messages_after();
