-- Voicemail-to-email, second step: Asterisk's pagerfromstring and pagerdateformat as per-context
-- overrides, and an index for the sweep of finished (sent or failed) jobs.

ALTER TABLE context_email_settings ADD COLUMN pagerfromstring VARCHAR(255) NULL;
ALTER TABLE context_email_settings ADD COLUMN pagerdateformat VARCHAR(64) NULL;

CREATE INDEX email_jobs_finished ON email_jobs (status, updated_at);
