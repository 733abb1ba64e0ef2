-- Voicemail-to-email: the durable outbox of notification emails and per-context template overrides.
-- Times ending in _ms are Unix milliseconds.

-- One row per notification of a message: kind 'email' (full notice, optional attachment) or 'pager'
-- (short text-only notice). Written in the deposit's (or forward's) transaction. The message is
-- rendered when the job is sent; msgnum is the position at deposit (Asterisk numbers the mail so).
CREATE TABLE email_jobs (
    id              BIGINT AUTO_INCREMENT PRIMARY KEY,
    message_id      VARCHAR(36) NOT NULL,
    mailbox_id      VARCHAR(36) NOT NULL,
    kind            VARCHAR(8) NOT NULL,
    recipients      VARCHAR(1024) NOT NULL,
    msgnum          BIGINT NOT NULL,
    -- For a forwarded copy: who forwarded it (the VM_CIDNUM/VM_CIDNAME of Asterisk's forward mail).
    fwd_cidnum      VARCHAR(80) NULL,
    fwd_cidname     VARCHAR(80) NULL,
    -- pending, sent or failed.
    status          VARCHAR(16) NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    last_error      VARCHAR(1024) NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX email_jobs_due ON email_jobs (status, next_attempt_ms);
CREATE INDEX email_jobs_message ON email_jobs (mailbox_id, message_id);

-- Per-context overrides of the [email] template settings; NULL = the global value.
CREATE TABLE context_email_settings (
    context         VARCHAR(80) PRIMARY KEY,
    serveremail     VARCHAR(255) NULL,
    fromstring      VARCHAR(255) NULL,
    emailsubject    TEXT NULL,
    emailbody       TEXT NULL,
    pagersubject    TEXT NULL,
    pagerbody       TEXT NULL,
    emaildateformat VARCHAR(64) NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT context_email_settings_context_fk FOREIGN KEY (context) REFERENCES contexts(name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
