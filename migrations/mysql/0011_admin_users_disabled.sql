-- Admin users can be disabled from the web UI (/ui/admins): a disabled admin cannot sign in and
-- their sessions end. Kept as a flag, not a deletion, so the audit log's names stay meaningful.
ALTER TABLE admin_users ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
