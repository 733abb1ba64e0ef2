-- Bulk load for bench/list_scale.sh: 1,000 contexts, 100,000 mailboxes, 1,000,000 messages, on a
-- PostgreSQL database whose schema voxmail's migrations made (migrations/postgres/*.sql).
--
--   psql -v ON_ERROR_STOP=1 -v now=<unix secs> -v pin_hash='<argon2 PHC string>' -f list_scale_load.sql
--
-- Everything is generated server-side (INSERT … SELECT generate_series); nothing crosses the wire
-- but this file. Layout (the wrk Lua script and the pgbench scripts compute addresses the same way):
--   mailbox idx 0..99999:  context 'tenant-' || lpad(idx / 100 + 1, 4, '0')  (1,000 contexts × 100)
--                          mailbox (2000 + idx % 100)::text                    (2000..2099)
--   heavy:  idx % 331 = 17             (303 mailboxes, 200-1,000 messages each, maxmsg 2000)
--   busy:   idx % 20 = 3, not heavy    (~4,985 mailboxes, 30-90 messages)
--   others: exponential, mean ~5.5, at most 29 (about 15 % are empty)
-- then the total is trimmed to exactly 1,000,000 on the heavy mailboxes.
-- Messages: inserted in time order (so each mailbox's rows are scattered over the table as
-- deposits leave them); origtime uniform over the last 90 days; folders by age — of the last 7 days' messages
-- 70 % are new (INBOX, 3 % of those Urgent), of older ones 12 %; the rest Old (72 %) or
-- Work/Family/Friends; msgnum is 0..n-1 per (dir) in deposit order, as voxmail numbers them.
-- MWI counts are not stored: voxmail computes them from `messages` (COUNTS_SQL in
-- src/store/sql/messages.rs), so they are consistent by construction; `mailboxes.version` is set
-- to the number of changes a mailbox plausibly saw (2 per message).
-- Besides: `email_jobs` rows ('sent') for the last 7 days' messages of mailboxes with an email
-- address, and the outbox (`events`, 'message.deposited') for the same 7 days (the retention
-- default), with `outbox_counter` at its end — so the table sizes are those of a live system.

\set ON_ERROR_STOP on
SET synchronous_commit = off;
SET work_mem = '256MB';
SET maintenance_work_mem = '1GB';
SELECT setseed(0.4242) AS seeded \gset

-- A UUIDv7-shaped id (48-bit ms timestamp, version 7, variant 10) whose random part comes from md5(seed),
-- so message ids sort by time as voxmail's do.
CREATE FUNCTION pg_temp.uuid7(ms bigint, seed text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(m, 1, 3) || '-'
        || substr('89ab', 1 + (ascii(substr(m, 4, 1)) % 4), 1) || substr(m, 5, 3) || '-'
        || substr(m, 8, 12)
    FROM (SELECT lpad(to_hex(ms), 12, '0') AS h, md5(seed) AS m) x
$$;

\echo '[load] contexts'
INSERT INTO contexts (name, description, created_at)
SELECT 'tenant-' || lpad(c::text, 4, '0'), 'Tenant ' || c, :now::bigint - 400 * 86400
FROM generate_series(1, 1000) c;

\echo '[load] mailboxes'
CREATE TEMP TABLE mb AS
SELECT idx,
       pg_temp.uuid7((:now::bigint - 400 * 86400 + idx * 60) * 1000, 'mb' || idx) AS uniqueid,
       'tenant-' || lpad((idx / 100 + 1)::text, 4, '0') AS context,
       (2000 + idx % 100)::text AS mailbox,
       CASE WHEN idx % 331 = 17 THEN 200 + floor(random() * 801)::int
            WHEN idx % 20 = 3 THEN 30 + floor(random() * 61)::int
            ELSE least(29, floor(-ln(1.0 - random()) * 6))::int END AS n,
       (ARRAY['Anna','Ben','Carla','David','Eva','Felix','Greta','Hugo','Ines','Jonas','Karin',
              'Lukas','Mia','Noah','Olga','Paul','Rosa','Simon','Tina','Uwe'])[1 + idx % 20] AS first,
       (ARRAY['Meyer','Schmidt','Novak','Rossi','Dubois','Jansen','Silva','Kowalski','Berg',
              'Fischer','Lang','Weber','Moreau','Costa','Horvath','Nilsson','Brandt'])[1 + (idx / 20) % 17] AS last,
       random() AS r
FROM generate_series(0, 99999) idx;

-- Exactly 1,000,000 messages: spread the difference over the heavy mailboxes.
UPDATE mb SET n = mb.n + d.per + CASE WHEN mb.idx = d.first_idx THEN d.rest ELSE 0 END
FROM (SELECT (1000000 - sum(n)) / count(*) FILTER (WHERE idx % 331 = 17) AS per,
             (1000000 - sum(n)) % count(*) FILTER (WHERE idx % 331 = 17) AS rest,
             min(idx) FILTER (WHERE idx % 331 = 17) AS first_idx
      FROM mb) d
WHERE mb.idx % 331 = 17;

INSERT INTO mailboxes (uniqueid, context, mailbox, password, fullname, email, pager, attach,
    attachfmt, maxmsg, maxsecs, minsecs, tz, language, deletevoicemail, version, pin_failures,
    pin_window_start, pin_locked_until, created_at, updated_at)
SELECT uniqueid, context, mailbox,
       CASE WHEN r < 0.9 THEN :'pin_hash' ELSE '' END,
       first || ' ' || last,
       CASE WHEN r < 0.7 THEN lower(first || '.' || last || '.' || mailbox) || '@' || context || '.example' ELSE '' END,
       CASE WHEN r < 0.05 THEN mailbox || '@pager.' || context || '.example' ELSE '' END,
       'yes', 'wav',
       CASE WHEN idx % 331 = 17 THEN 2000 END, NULL, NULL,
       CASE WHEN r < 0.3 THEN 'european' ELSE '' END,
       CASE WHEN r < 0.2 THEN 'de' ELSE '' END,
       'no', 2 * n, 0, 0, 0,
       :now::bigint - 400 * 86400 + idx * 60, :now::bigint - 400 * 86400 + idx * 60
FROM mb;

\echo '[load] messages (1,000,000)'
CREATE TEMP TABLE ms AS
SELECT mb.idx, mb.uniqueid AS mailbox_id, mb.context AS mctx, mb.mailbox AS mbx, mb.r AS mr, k,
       age, :now::bigint - age AS origtime, v, random() AS w, random() AS x, random() AS y
FROM mb, LATERAL (SELECT k, floor(random() * 90 * 86400)::bigint AS age, random() AS v
                  FROM generate_series(1, mb.n) k) g;

CREATE TEMP TABLE ms2 AS
SELECT s.*,
       pg_temp.uuid7(origtime * 1000 + floor(x * 1000)::bigint, idx || '/' || k) AS id,
       md5(idx || '/' || k) AS h,
       CASE WHEN (age < 7 * 86400 AND v < 0.70) OR (age >= 7 * 86400 AND v < 0.12)
                 THEN CASE WHEN w < 0.03 THEN 'Urgent' ELSE 'INBOX' END
            WHEN w < 0.72 THEN 'Old'
            WHEN w < 0.86 THEN 'Work'
            WHEN w < 0.94 THEN 'Family'
            ELSE 'Friends' END AS folder,
       2000 + floor(-ln(1.0 - y) * 25000)::bigint AS dur_ms
FROM ms s;

INSERT INTO messages (id, mailbox_id, dir, msgnum, context, macrocontext, callerid, origtime,
    duration, recording, flag, category, mailboxuser, mailboxcontext, msg_id, folder, is_read,
    origmailbox, exten, rdnis, priority, callerchan, caller_id_num, caller_id_name, duration_ms,
    audio_key, audio_format, codec, sample_rate, channels, byte_size, sha256, forwarded_from,
    created_by, created_at, updated_at)
SELECT id, mailbox_id,
       '/var/spool/asterisk/voicemail/' || mctx || '/' || mbx || '/' || folder,
       row_number() OVER (PARTITION BY mailbox_id, folder ORDER BY origtime, id) - 1,
       CASE WHEN w < 0.8 THEN 'from-pstn' ELSE 'from-internal' END, '',
       CASE WHEN x < 0.5 THEN '"' || cname || '" <' || cnum || '>' ELSE cnum END,
       origtime, (least(dur_ms, 300000) + 500) / 1000, NULL,
       CASE WHEN folder = 'Urgent' OR (folder = 'Old' AND y > 0.97) THEN 'Urgent' ELSE '' END, '',
       mbx, mctx, origtime || '-' || substr(h, 1, 8), folder,
       CASE WHEN folder IN ('INBOX', 'Urgent') THEN 0 ELSE 1 END,
       mbx || '@' || mctx, mbx, '', 1,
       'PJSIP/trunk-' || substr(h, 9, 8),
       cnum, CASE WHEN x < 0.5 THEN cname ELSE '' END,
       least(dur_ms, 300000),
       'messages/' || mailbox_id || '/' || id || '.audio', 'wav_ulaw', 'pcm_mulaw', 8000, 1,
       58 + least(dur_ms, 300000) * 8, h || md5(h), NULL,
       'node-' || (1 + idx % 3), origtime,
       origtime + CASE WHEN folder IN ('INBOX', 'Urgent') THEN 0 ELSE floor(w * 86400)::bigint END
FROM (SELECT ms2.*, '+4930' || (1000000 + floor(v * 8999999)::bigint) AS cnum,
             (ARRAY['Acme GmbH','Mobile','Reception','Unknown Caller','Pharmacy','Taxi Central',
                    'Dr. Weiss','School Office'])[1 + floor(y * 8)::int] AS cname
      FROM ms2) t
-- In deposit order, as a live system writes them: a mailbox's messages are spread over the heap,
-- not packed together as a load in mailbox order would leave them (which flatters every query).
ORDER BY origtime, id;

\echo '[load] email_jobs and events (last 7 days)'
INSERT INTO email_jobs (message_id, mailbox_id, kind, recipients, msgnum, status, attempts,
    next_attempt_ms, lease_until_ms, created_at, updated_at, sent_at)
SELECT m.id, m.mailbox_id, 'email', b.email, m.msgnum, 'sent', 1, m.origtime * 1000, 0,
       m.origtime, m.origtime + 2, m.origtime + 2
FROM messages m JOIN mailboxes b ON b.uniqueid = m.mailbox_id
WHERE m.origtime >= :now::bigint - 7 * 86400 AND b.email <> ''
ORDER BY m.origtime, m.id;

-- The outbox: one message.deposited per message of the last 7 days, with the mailbox's counts now.
CREATE TEMP TABLE counts AS
SELECT mailbox_id,
       count(*) FILTER (WHERE folder IN ('INBOX', 'Urgent') AND is_read = 0) AS new_count,
       count(*) FILTER (WHERE folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0)) AS old_count,
       count(*) FILTER (WHERE folder IN ('INBOX', 'Urgent') AND is_read = 0
                        AND (folder = 'Urgent' OR flag = 'Urgent')) AS urgent_new,
       count(*) FILTER (WHERE (folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0))
                        AND (folder = 'Urgent' OR flag = 'Urgent')) AS urgent_old
FROM messages GROUP BY mailbox_id;

INSERT INTO events (seq, event_type, context, mailbox, mailbox_id, message_id, new_count,
    old_count, urgent_new, urgent_old, version, node_id, created_at)
SELECT row_number() OVER (ORDER BY m.origtime, m.id), 'message.deposited', m.mailboxcontext,
       m.mailboxuser, m.mailbox_id, m.id, c.new_count, c.old_count, c.urgent_new, c.urgent_old,
       b.version, m.created_by, m.origtime
FROM messages m JOIN counts c USING (mailbox_id) JOIN mailboxes b ON b.uniqueid = m.mailbox_id
WHERE m.origtime >= :now::bigint - 7 * 86400;

UPDATE outbox_counter SET seq = (SELECT COALESCE(max(seq), 0) FROM events) WHERE id = 1;
