-- Admin web UI: admin users, their sessions, the audit log of their actions, and the indexes of
-- the dashboard's aggregates.

-- People who sign in to /ui. `email` is stored lower-cased. `contexts` is a comma-separated list
-- of the contexts the admin may see (empty = every context, and may create contexts).
CREATE TABLE admin_users (
    id                VARCHAR(36) COLLATE "C" PRIMARY KEY,
    email             VARCHAR(255) COLLATE "C" NOT NULL,
    password_hash     VARCHAR(255) COLLATE "C" NOT NULL,
    contexts          VARCHAR(2048) COLLATE "C" NOT NULL DEFAULT '',
    -- Failed sign-ins in the window that started at fail_window_start; locked until locked_until.
    failed_logins     BIGINT NOT NULL DEFAULT 0,
    fail_window_start BIGINT NOT NULL DEFAULT 0,
    locked_until      BIGINT NOT NULL DEFAULT 0,
    last_login_at     BIGINT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CONSTRAINT admin_users_email UNIQUE (email)
);

-- Signed-in browsers. Only the SHA-256 of the 256-bit session token is stored.
CREATE TABLE admin_sessions (
    token_hash   VARCHAR(64) COLLATE "C" PRIMARY KEY,
    admin_id     VARCHAR(36) COLLATE "C" NOT NULL REFERENCES admin_users(id),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    user_agent   VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
    ip           VARCHAR(64) COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);

-- Every admin action: who, what, when, on what.
CREATE TABLE admin_audit (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    admin_id    VARCHAR(36) COLLATE "C" NOT NULL,
    admin_email VARCHAR(255) COLLATE "C" NOT NULL,
    action      VARCHAR(64) COLLATE "C" NOT NULL,
    target      VARCHAR(255) COLLATE "C" NOT NULL DEFAULT '',
    detail      VARCHAR(1024) COLLATE "C" NOT NULL DEFAULT '',
    ip          VARCHAR(64) COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX admin_audit_at ON admin_audit (at);

-- Dashboard: deposits per day over the last 30 days (a range of this index).
CREATE INDEX messages_origtime ON messages (origtime);
-- Dashboard: totals and storage per context, read from this index alone (index-only scan).
CREATE INDEX messages_context_usage ON messages (mailboxcontext, folder, is_read, byte_size);
