-- Voicemail-to-email: the durable outbox of notification emails and per-context template overrides.
-- Times ending in _ms are Unix milliseconds.

-- One row per notification of a message: kind 'email' (full notice, optional attachment) or 'pager'
-- (short text-only notice). Written in the deposit's (or forward's) transaction. The message is
-- rendered when the job is sent; msgnum is the position at deposit (Asterisk numbers the mail so).
CREATE TABLE email_jobs (
    id              BIGSERIAL PRIMARY KEY,
    message_id      VARCHAR(36) COLLATE "C" NOT NULL,
    mailbox_id      VARCHAR(36) COLLATE "C" NOT NULL,
    kind            VARCHAR(8) COLLATE "C" NOT NULL,
    recipients      VARCHAR(1024) COLLATE "C" NOT NULL,
    msgnum          BIGINT NOT NULL,
    -- For a forwarded copy: who forwarded it (the VM_CIDNUM/VM_CIDNAME of Asterisk's forward mail).
    fwd_cidnum      VARCHAR(80) COLLATE "C" NULL,
    fwd_cidname     VARCHAR(80) COLLATE "C" NULL,
    -- pending, sent or failed.
    status          VARCHAR(16) COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    last_error      VARCHAR(1024) COLLATE "C" NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT NULL
);
CREATE INDEX email_jobs_due ON email_jobs (status, next_attempt_ms);
CREATE INDEX email_jobs_message ON email_jobs (mailbox_id, message_id);

-- Per-context overrides of the [email] template settings; NULL = the global value.
CREATE TABLE context_email_settings (
    context         VARCHAR(80) COLLATE "C" PRIMARY KEY REFERENCES contexts(name),
    serveremail     VARCHAR(255) COLLATE "C" NULL,
    fromstring      VARCHAR(255) COLLATE "C" NULL,
    emailsubject    TEXT COLLATE "C" NULL,
    emailbody       TEXT COLLATE "C" NULL,
    pagersubject    TEXT COLLATE "C" NULL,
    pagerbody       TEXT COLLATE "C" NULL,
    emaildateformat VARCHAR(64) COLLATE "C" NULL,
    updated_at      BIGINT NOT NULL
);
