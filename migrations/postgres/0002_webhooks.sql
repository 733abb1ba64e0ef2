-- Webhooks and their durable delivery queue. Times ending in _ms are Unix milliseconds.

CREATE TABLE webhooks (
    id          VARCHAR(36) COLLATE "C" PRIMARY KEY,
    context     VARCHAR(80) COLLATE "C" NOT NULL REFERENCES contexts(name),
    url         VARCHAR(2048) COLLATE "C" NOT NULL,
    -- Comma-separated event types to deliver; empty = every type.
    event_types VARCHAR(1024) COLLATE "C" NOT NULL DEFAULT '',
    secret      VARCHAR(255) COLLATE "C" NOT NULL,
    active      BIGINT NOT NULL DEFAULT 1,
    -- The outbox position when the webhook was made: only later events are delivered to it.
    after_seq   BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX webhooks_context ON webhooks (context);

-- One row per (webhook, event). The body is fixed when the row is made, so retries send the same
-- bytes. Only the oldest pending delivery of a (webhook, mailbox) is sent, so order per mailbox holds.
CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      VARCHAR(36) COLLATE "C" NOT NULL,
    event_seq       BIGINT NOT NULL,
    event_type      VARCHAR(40) COLLATE "C" NOT NULL,
    mailbox_id      VARCHAR(36) COLLATE "C" NOT NULL,
    payload         TEXT COLLATE "C" NOT NULL,
    status          VARCHAR(16) COLLATE "C" NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,
    last_status     BIGINT NULL,
    last_error      VARCHAR(1024) COLLATE "C" NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, mailbox_id, status, id);

-- Every attempt, for GET /v1/webhooks/{id}/deliveries.
CREATE TABLE webhook_attempts (
    delivery_id  BIGINT NOT NULL,
    attempt      BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    http_status  BIGINT NULL,
    error        VARCHAR(1024) COLLATE "C" NULL,
    duration_ms  BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Position of each outbox consumer (e.g. the webhook dispatcher) in the events table.
CREATE TABLE consumer_cursors (
    name     VARCHAR(64) COLLATE "C" PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
