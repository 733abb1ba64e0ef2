-- voxmail core schema (MySQL/MariaDB), mirroring migrations/sqlite column for column. Integers are BIGINT
-- (sqlx Any decodes i64); utf8mb4_bin compares bytewise (case-sensitive, as SQLite does); InnoDB
-- ignores inline REFERENCES, so foreign keys are explicit constraints.

-- Tenants (Asterisk voicemail contexts).
CREATE TABLE contexts (
    name        VARCHAR(80) PRIMARY KEY,
    description VARCHAR(255) NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Mailboxes. Column names follow Asterisk's realtime `voicemail` table where they mean the same thing.
-- `password` holds an argon2 PHC hash of the PIN, never the PIN.
CREATE TABLE mailboxes (
    uniqueid        VARCHAR(36) PRIMARY KEY,
    context         VARCHAR(80) NOT NULL,
    mailbox         VARCHAR(30) NOT NULL,
    password        VARCHAR(255) NOT NULL DEFAULT '',
    fullname        VARCHAR(150) NOT NULL DEFAULT '',
    email           VARCHAR(255) NOT NULL DEFAULT '',
    pager           VARCHAR(255) NOT NULL DEFAULT '',
    attach          VARCHAR(3) NOT NULL DEFAULT 'yes',
    attachfmt       VARCHAR(10) NOT NULL DEFAULT 'wav',
    maxmsg          BIGINT NULL,
    maxsecs         BIGINT NULL,
    minsecs         BIGINT NULL,
    tz              VARCHAR(64) NOT NULL DEFAULT '',
    language        VARCHAR(20) NOT NULL DEFAULT '',
    deletevoicemail VARCHAR(3) NOT NULL DEFAULT 'no',
    -- MWI version: grows by one with every change of the mailbox, in the changing transaction.
    version         BIGINT NOT NULL DEFAULT 0,
    pin_failures    BIGINT NOT NULL DEFAULT 0,
    pin_window_start BIGINT NOT NULL DEFAULT 0,
    pin_locked_until BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT mailboxes_context_mailbox UNIQUE (context, mailbox),
    CONSTRAINT mailboxes_context_fk FOREIGN KEY (context) REFERENCES contexts(name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages. The first block is Asterisk's ODBC_STORAGE table (voicemessages); the second is ours.
CREATE TABLE messages (
    id              VARCHAR(36) PRIMARY KEY,
    mailbox_id      VARCHAR(36) NOT NULL,
    dir             VARCHAR(255) NOT NULL,
    msgnum          BIGINT NOT NULL,
    context         VARCHAR(80) NOT NULL DEFAULT '',
    macrocontext    VARCHAR(80) NOT NULL DEFAULT '',
    callerid        VARCHAR(80) NOT NULL DEFAULT '',
    origtime        BIGINT NOT NULL,
    duration        BIGINT NOT NULL,
    recording       LONGBLOB NULL,
    flag            VARCHAR(30) NOT NULL DEFAULT '',
    category        VARCHAR(30) NOT NULL DEFAULT '',
    mailboxuser     VARCHAR(30) NOT NULL,
    mailboxcontext  VARCHAR(80) NOT NULL,
    msg_id          VARCHAR(40) NOT NULL,

    folder          VARCHAR(30) NOT NULL,
    is_read         BIGINT NOT NULL DEFAULT 0,
    origmailbox     VARCHAR(120) NOT NULL DEFAULT '',
    exten           VARCHAR(80) NOT NULL DEFAULT '',
    rdnis           VARCHAR(80) NOT NULL DEFAULT '',
    priority        BIGINT NOT NULL DEFAULT 0,
    callerchan      VARCHAR(255) NOT NULL DEFAULT '',
    caller_id_num   VARCHAR(80) NOT NULL DEFAULT '',
    caller_id_name  VARCHAR(80) NOT NULL DEFAULT '',
    duration_ms     BIGINT NOT NULL,
    audio_key       VARCHAR(255) NOT NULL,
    audio_format    VARCHAR(20) NOT NULL,
    codec           VARCHAR(20) NOT NULL,
    sample_rate     BIGINT NOT NULL,
    channels        BIGINT NOT NULL,
    byte_size       BIGINT NOT NULL,
    sha256          VARCHAR(64) NOT NULL,
    forwarded_from  VARCHAR(36) NULL,
    created_by      VARCHAR(64) NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- Asterisk's primary key: one message per position in a folder.
    CONSTRAINT messages_dir_msgnum UNIQUE (dir, msgnum),
    CONSTRAINT messages_mailbox_id_fk FOREIGN KEY (mailbox_id) REFERENCES mailboxes(uniqueid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX messages_mailbox_folder_id ON messages (mailbox_id, folder, id);
CREATE INDEX messages_mailbox_id ON messages (mailbox_id, id);

-- Greetings (unavailable, busy, temp, name). `recording` is used by the in-database audio store.
CREATE TABLE greetings (
    mailbox_id   VARCHAR(36) NOT NULL,
    kind         VARCHAR(16) NOT NULL,
    audio_key    VARCHAR(255) NOT NULL,
    audio_format VARCHAR(20) NOT NULL,
    codec        VARCHAR(20) NOT NULL,
    sample_rate  BIGINT NOT NULL,
    channels     BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    byte_size    BIGINT NOT NULL,
    sha256       VARCHAR(64) NOT NULL,
    recording    LONGBLOB NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, kind),
    CONSTRAINT greetings_mailbox_id_fk FOREIGN KEY (mailbox_id) REFERENCES mailboxes(uniqueid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- API keys: only the SHA-256 of the (high-entropy) token is stored.
CREATE TABLE api_keys (
    id           VARCHAR(36) PRIMARY KEY,
    name         VARCHAR(120) NOT NULL,
    role         VARCHAR(16) NOT NULL,
    context      VARCHAR(80) NULL,
    token_prefix VARCHAR(32) NOT NULL,
    token_hash   VARCHAR(64) NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NULL,
    revoked_at   BIGINT NULL,
    CONSTRAINT api_keys_token_hash UNIQUE (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Idempotency keys of deposits: a retry with the same key answers with the same message.
CREATE TABLE idempotency_keys (
    mailbox_id   VARCHAR(36) NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    message_id   VARCHAR(36) NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, idem_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Event outbox: one row per change, written in the changing transaction, with the mailbox's counts.
CREATE TABLE events (
    seq         BIGINT AUTO_INCREMENT PRIMARY KEY,
    event_type  VARCHAR(40) NOT NULL,
    context     VARCHAR(80) NOT NULL,
    mailbox     VARCHAR(30) NOT NULL,
    mailbox_id  VARCHAR(36) NOT NULL,
    message_id  VARCHAR(36) NULL,
    new_count   BIGINT NOT NULL,
    old_count   BIGINT NOT NULL,
    urgent_new  BIGINT NOT NULL,
    urgent_old  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    node_id     VARCHAR(64) NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX events_mailbox ON events (mailbox_id, seq);
CREATE INDEX events_created_at ON events (created_at);
