-- Asterisk MWI push targets (ARI, AMI, SIP NOTIFY) and the per-(target, mailbox) push state.
-- Pushes coalesce: only the newest counts of a mailbox matter, so a target that was down gets one
-- push with the current counts, not a replay of every change. Times ending in _ms are Unix ms.

CREATE TABLE mwi_targets (
    id          VARCHAR(36) COLLATE "C" PRIMARY KEY,
    context     VARCHAR(80) COLLATE "C" NOT NULL REFERENCES contexts(name),
    kind        VARCHAR(8) COLLATE "C" NOT NULL,
    -- ari: base URL (http://pbx:8088); ami: host:port; sip: sip:user@host:port;transport=udp|tcp
    url         VARCHAR(1024) COLLATE "C" NOT NULL,
    username    VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
    secret      VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
    -- Only this mailbox's counts go to the target (empty = every mailbox of the context).
    mailbox     VARCHAR(30) COLLATE "C" NOT NULL DEFAULT '',
    active      BIGINT NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX mwi_targets_context ON mwi_targets (context);

CREATE TABLE mwi_pushes (
    target_id       VARCHAR(36) COLLATE "C" NOT NULL,
    mailbox_id      VARCHAR(36) COLLATE "C" NOT NULL,
    context         VARCHAR(80) COLLATE "C" NOT NULL,
    mailbox         VARCHAR(30) COLLATE "C" NOT NULL,
    wanted_version  BIGINT NOT NULL,
    pushed_version  BIGINT NOT NULL DEFAULT -1,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    last_error      VARCHAR(1024) COLLATE "C" NULL,
    last_pushed_ms  BIGINT NULL,
    PRIMARY KEY (target_id, mailbox_id)
);
CREATE INDEX mwi_pushes_due ON mwi_pushes (next_attempt_ms);
