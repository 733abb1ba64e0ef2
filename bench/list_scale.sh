#!/usr/bin/env bash
# Scale benchmark on PostgreSQL: 1,000 contexts, 100,000 mailboxes, 1,000,000 messages.
#
#   bash bench/list_scale.sh          (from the repository root; ~7 min after the release build)
#
# 1. Builds voxmail (release), creates a fresh database (BENCH_PG_URL/BENCH_DB, dropped at the end
#    unless KEEP=1), runs `voxmail context create` once so its migrations make the schema, and
#    bulk-loads it server-side with bench/list_scale_load.sql (INSERT … SELECT generate_series):
#    skewed message counts (median 4, 303 mailboxes with 200–1,000), folders INBOX/Old/Work/…,
#    msgnum 0..n-1 per folder, realistic column values, 7 days of email jobs and outbox events.
#    Then VACUUM (ANALYZE). Prints the load time and the size of every table with its indexes.
# 2. Starts `voxmail serve` (release, fs audio store in a temp dir, email off) on that database, makes
#    an admin API key, and measures with wrk + bench/list_scale.lua, to random mailboxes:
#      list    GET /v1/mailboxes/{addr}/messages?folder=INBOX   (first page, default limit 50)
#      mwi     GET /v1/mailboxes/{addr}/mwi                     (the MWI counts)
#    at 1 and 16 clients (BENCH_DURATION s each), over all mailboxes and over the 303 heavy ones;
#    then deposits of fixtures/hello-ulaw.wav (µ-law WAV, 25 kB, 3.1 s) at 16 clients.
#    Peer, same run and concurrency: pgbench running the statements voxmail runs for the same
#    request (API-key lookup, mailbox lookup, the listing / BEGIN + version + counts + COMMIT, the
#    email-state query), taken from src/store/sql, prepared, random mailbox — so the table shows
#    voxmail's overhead over the raw database.
#    Per run it also takes the CPU time of voxmail and of the PostgreSQL backends serving it (from
#    /proc; per request it does not depend on what else the machine runs) and counts sessions left
#    idle in a transaction when wrk stops.
# 3. EXPLAIN (ANALYZE, BUFFERS) of the list and count statements (generic plans, as sqlx's
#    prepared statements get) on a typical and the largest mailbox; a consistency check of
#    msgnum after the deposits; the server's peak RSS.
#
# Needs: cargo, psql + pgbench (postgresql-client), wrk, curl, python3, a PostgreSQL server you may
# create databases on. wrk/curl/pgbench are installed with apt-get if absent. Loopback only.
# Tunables: BENCH_PG_URL (postgres://postgres@127.0.0.1:5432), BENCH_DB (voxmail_bench_scale),
# BENCH_DURATION (20), BENCH_LEVELS ("1 16"), BENCH_DEPOSIT_CLIENTS (16), KEEP=1 keeps the database
# and the temp dir (logs, wrk/pgbench outputs, plans). VOXMAIL_* variables reach the server.
# BENCH_EXTRA_SQL: statements run after the load, before VACUUM (ANALYZE) — to try a schema change
# (e.g. an index) on the same data. BENCH_VOXMAIL=path runs that binary instead of building.
set -euo pipefail

PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
DB=${BENCH_DB:-voxmail_bench_scale}
DURATION=${BENCH_DURATION:-20}
LEVELS=${BENCH_LEVELS:-"1 16"}
DEPOSIT_CLIENTS=${BENCH_DEPOSIT_CLIENTS:-16}
KEEP=${KEEP:-0}
DB_URL=$PG_URL/$DB

cd "$(dirname "$0")/.."
ROOT=$(pwd)
T0=$(date +%s)

log() { printf '[scale] %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------------
missing=()
for pair in wrk:wrk curl:curl python3:python3 psql:postgresql-client pgbench:postgresql-client; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
psql "$PG_URL/postgres" -qAtc 'SELECT 1' >/dev/null || { log "no PostgreSQL at $PG_URL"; exit 1; }

# --- build ---------------------------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source bench/lib.sh
VOXMAIL=$(voxmail_binary)
T_BUILT=$(date +%s)

# --- temp dir, cleanup ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-scale.XXXXXX")
VOX_PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $VOX_PID ]] && kill -0 "$VOX_PID" 2>/dev/null; then
        kill -TERM "$VOX_PID" 2>/dev/null || true
        wait "$VOX_PID" 2>/dev/null || true
    fi
    if [[ $KEEP == 1 ]]; then
        log "kept database $DB_URL and $TMP"
    else
        psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export VOXMAIL_DATABASE__URL=$DB_URL VOXMAIL_DATA_DIR=$TMP/data VOXMAIL_NODE_ID=bench-scale
# Deposits would queue notification mails to an SMTP relay that is not there.
export VOXMAIL_EMAIL__ENABLED=false
export VOXMAIL_LOG__FILTER=${VOXMAIL_LOG__FILTER:-warn}
sql() { psql "$DB_URL" -v ON_ERROR_STOP=1 -qAt "$@"; }

# --- database: schema by voxmail's migrations, then the bulk load --------------------------------
log "fresh database $DB"
psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
"$VOXMAIL" context create bench-seed >/dev/null
"$VOXMAIL" mailbox create 1@bench-seed --pin 4711 >/dev/null
PIN_HASH=$(sql -c "SELECT password FROM mailboxes WHERE context = 'bench-seed'")
[[ $PIN_HASH == \$argon2* ]] || { log "unexpected PIN hash: $PIN_HASH"; exit 1; }
sql -c "DELETE FROM events" -c "DELETE FROM mailboxes WHERE context = 'bench-seed'" \
    -c "DELETE FROM contexts WHERE name = 'bench-seed'" -c "UPDATE outbox_counter SET seq = 0"

log "bulk load (1,000 contexts, 100,000 mailboxes, 1,000,000 messages)"
NOW=$(date +%s)
t=$(date +%s.%N)
sql -v now="$NOW" -v pin_hash="$PIN_HASH" -f "$ROOT/bench/list_scale_load.sql" >"$TMP/load.log" 2>&1 \
    || { cat "$TMP/load.log" >&2; exit 1; }
LOAD_S=$(python3 -c "import time; print(f'{time.time() - $t:.1f}')")
if [[ -n ${BENCH_EXTRA_SQL:-} ]]; then
    log "extra SQL: $BENCH_EXTRA_SQL"
    t=$(date +%s.%N)
    sql -c "$BENCH_EXTRA_SQL"
    EXTRA_S=$(python3 -c "import time; print(f'{time.time() - $t:.1f}')")
fi
t=$(date +%s.%N)
sql -c "VACUUM (ANALYZE)"
VACUUM_S=$(python3 -c "import time; print(f'{time.time() - $t:.1f}')")
log "loaded in ${LOAD_S} s, VACUUM (ANALYZE) in ${VACUUM_S} s"

sql -F ' ' >"$TMP/facts.txt" <<'SQL'
SELECT 'contexts', count(*) FROM contexts;
SELECT 'mailboxes', count(*) FROM mailboxes;
SELECT 'messages', count(*) FROM messages;
SELECT 'email_jobs', count(*) FROM email_jobs;
SELECT 'events', count(*) FROM events;
SELECT 'per_mailbox_p50_p90_p99_max', string_agg(v::text, '/') FROM (
  SELECT unnest(percentile_disc(ARRAY[0.5, 0.9, 0.99, 1]) WITHIN GROUP (ORDER BY n)) v
  FROM (SELECT count(m.id) n FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.uniqueid
        GROUP BY b.uniqueid) x) y;
SELECT 'heavy_inbox_min_max', min(n) || '/' || max(n) FROM (SELECT count(*) n FROM messages
  WHERE folder = 'INBOX' AND mailbox_id IN (SELECT uniqueid FROM mailboxes WHERE maxmsg = 2000)
  GROUP BY mailbox_id) x;
SELECT 'bad_msgnum_dirs', count(*) FROM (SELECT dir FROM messages GROUP BY dir
  HAVING min(msgnum) <> 0 OR max(msgnum) <> count(*) - 1) d;
SQL
fact() { awk -v k="$1" '$1 == k { print $2 }' "$TMP/facts.txt"; }
[[ $(fact bad_msgnum_dirs) == 0 ]] || { log "msgnum is not 0..n-1 in $(fact bad_msgnum_dirs) folders"; exit 1; }

sql -F '|' >"$TMP/sizes.txt" <<'SQL'
SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND pg_total_relation_size(c.oid) > 1048576
ORDER BY pg_total_relation_size(c.oid) DESC;
SELECT 'database', 0, 0, pg_database_size(current_database());
SQL

# --- server --------------------------------------------------------------------------------------
TOKEN=$("$VOXMAIL" apikey create --name bench-scale --role admin 2>/dev/null)
TOKEN_HASH=$(sql -c "SELECT token_hash FROM api_keys WHERE name = 'bench-scale'")
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
NO_COLOR=1 "$VOXMAIL" serve --listen "127.0.0.1:$PORT" >"$TMP/voxmail.log" 2>&1 &
VOX_PID=$!
for _ in $(seq 200); do
    curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && break
    kill -0 "$VOX_PID" 2>/dev/null || { log "voxmail exited:"; cat "$TMP/voxmail.log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS -o /dev/null "$BASE/readyz" || { log "voxmail is not ready"; exit 1; }
BODY=$ROOT/fixtures/hello-ulaw.wav
auth=(-H "Authorization: Bearer $TOKEN")
for url in "$BASE/v1/mailboxes/2017@tenant-0001/messages?folder=INBOX" "$BASE/v1/mailboxes/2017@tenant-0001/mwi"; do
    code=$(curl -s -o "$TMP/preflight.json" -w '%{http_code}' "${auth[@]}" "$url")
    [[ $code == 200 ]] || { log "preflight $url: HTTP $code $(cat "$TMP/preflight.json")"; exit 1; }
done
code=$(curl -s -o "$TMP/preflight.json" -w '%{http_code}' "${auth[@]}" -H 'Content-Type: audio/wav' \
    --data-binary "@$BODY" "$BASE/v1/mailboxes/2099@tenant-1000/messages")
[[ $code == 201 ]] || { log "preflight deposit: HTTP $code $(cat "$TMP/preflight.json")"; exit 1; }
RSS_START=$(awk '/^VmRSS/ { print $2 }' "/proc/$VOX_PID/status")

# --- the peer's scripts: the statements voxmail runs per request (src/store/sql), prepared --------
# Mailbox idx -> address exactly as list_scale_load.sql lays it out; `:i` arrives as a parameter.
MB_SQL="SELECT uniqueid, context, mailbox, password, fullname, email, pager, attach, attachfmt, maxmsg, maxsecs, minsecs, tz, language, deletevoicemail, version, created_at, updated_at FROM mailboxes WHERE context = 'tenant-' || lpad((:i / 100 + 1)::text, 4, '0') AND mailbox = (2000 + :i % 100)::text \\gset m_"
KEY_SQL="SELECT id, name, role, context, token_prefix, created_at, last_used_at, revoked_at FROM api_keys WHERE token_hash = :th AND revoked_at IS NULL;"
MSG_COLS="id, mailbox_id, mailboxuser, mailboxcontext, dir, msgnum, folder, is_read, flag, category, context, macrocontext, callerid, caller_id_num, caller_id_name, origtime, duration_ms, origmailbox, exten, rdnis, priority, callerchan, msg_id, audio_key, audio_format, sample_rate, channels, byte_size, sha256, forwarded_from, created_by, created_at, updated_at"
COUNTS_SQL="SELECT COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 THEN 1 END) AS new_count, COUNT(CASE WHEN folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0) THEN 1 END) AS old_count, COUNT(CASE WHEN folder IN ('INBOX', 'Urgent') AND is_read = 0 AND (folder = 'Urgent' OR flag = 'Urgent') THEN 1 END) AS urgent_new, COUNT(CASE WHEN (folder = 'Old' OR (folder IN ('INBOX', 'Urgent') AND is_read <> 0)) AND (folder = 'Urgent' OR flag = 'Urgent') THEN 1 END) AS urgent_old FROM messages WHERE mailbox_id = :m_uniqueid;"
for set in all heavy; do
    if [[ $set == all ]]; then pick='\set i random(0, 99999)'; else pick=$'\\set h random(0, 302)\n\\set i 331 * :h + 17'; fi
    # `:after` is '0' (pgbench has no empty variables): below every id, as voxmail's '' for a first
    # page. It is also the email-state query's lower bound instead of the page's first id (pgbench
    # cannot keep the first row of a result): a superset of voxmail's rows, so no less work.
    cat >"$TMP/list-$set.pgb" <<EOF
$pick
\\set l_id 0
$KEY_SQL
$MB_SQL
SELECT $MSG_COLS FROM messages WHERE mailbox_id = :m_uniqueid AND folder = :folder AND id > :after ORDER BY id LIMIT :lim \\aset l_
SELECT message_id, kind, status, attempts, last_error FROM email_jobs WHERE mailbox_id = :m_uniqueid AND message_id >= :after AND message_id <= :l_id;
EOF
    cat >"$TMP/mwi-$set.pgb" <<EOF
$pick
$KEY_SQL
$MB_SQL
BEGIN;
SELECT version FROM mailboxes WHERE uniqueid = :m_uniqueid;
$COUNTS_SQL
COMMIT;
EOF
done

# --- plans ---------------------------------------------------------------------------------------
TYPICAL=$(sql -c "SELECT uniqueid FROM mailboxes WHERE context = 'tenant-0001' AND mailbox = '2018'")
BIGGEST=$(sql -c "SELECT mailbox_id FROM messages GROUP BY mailbox_id ORDER BY count(*) DESC LIMIT 1")
{
    for mid in "$TYPICAL" "$BIGGEST"; do
        echo "== mailbox $mid: $(sql -c "SELECT count(*) || ' messages, ' || count(*) FILTER (WHERE folder = 'INBOX') || ' in INBOX' FROM messages WHERE mailbox_id = '$mid'")"
        sql <<EOF
SET plan_cache_mode = force_generic_plan;
PREPARE list(text, text, text, bigint) AS SELECT $MSG_COLS FROM messages WHERE mailbox_id = \$1 AND folder = \$2 AND id > \$3 ORDER BY id LIMIT \$4;
PREPARE counts(text) AS ${COUNTS_SQL//:m_uniqueid/\$1}
PREPARE states(text, text, text) AS SELECT message_id, kind, status, attempts, last_error FROM email_jobs WHERE mailbox_id = \$1 AND message_id >= \$2 AND message_id <= \$3;
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY ON) EXECUTE list('$mid', 'INBOX', '', 51);
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY ON) EXECUTE counts('$mid');
EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY ON) EXECUTE states('$mid', '', 'ffffffff');
EOF
    done
} >"$TMP/plans.txt" 2>&1

# --- runs ----------------------------------------------------------------------------------------
# CPU time (clock ticks) of the voxmail process and of the PostgreSQL backends serving this
# database (their process titles name it), one "pid ticks" line each: the difference over a run
# is what the run cost the server and the database, whatever else runs on the machine.
cpu_snapshot() {
    python3 - "$VOX_PID" "$DB" <<'PY'
import os, sys
vox, db = sys.argv[1], sys.argv[2]
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if pid == vox or (cmd.startswith("postgres: ") and f" {db} " in cmd):
        print("vox" if pid == vox else "pg", pid, int(f[11]) + int(f[12]))
PY
}
cpu_delta() { # before-file after-file -> "vox_ticks pg_ticks"
    awk 'NR == FNR { b[$2] = $3; next } { d[$1] += $3 - ($2 in b ? b[$2] : 0) }
         END { printf "%d %d\n", d["vox"], d["pg"] }' "$1" "$2"
}
TICK=$(getconf CLK_TCK)

wrk_run() { # name mode set clients -> RESULT line, with vox_cpu_ms= and pg_cpu_ms= appended
    local name=$1 mode=$2 set=$3 c=$4 t=2
    ((c < 2)) && t=1
    cpu_snapshot >"$TMP/cpu-before"
    BENCH_MODE=$mode BENCH_SET=$set BENCH_TOKEN=$TOKEN BENCH_BODY=$BODY timeout $((DURATION + 60)) \
        wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 10s --latency -s "$ROOT/bench/list_scale.lua" \
        "$BASE/" >"$TMP/wrk-$name.txt" 2>&1 || true
    cpu_snapshot >"$TMP/cpu-after"
    # wrk closes its connections mid-request when it stops; sqlx 0.9's PostgreSQL begin() is not
    # cancel-safe, so a handler dropped while its BEGIN was in flight can leave a pooled
    # connection inside a transaction (sqlx issue #4393). Count such sessions right away.
    local cpu line idle_tx
    idle_tx=$(sql -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")
    cpu=$(cpu_delta "$TMP/cpu-before" "$TMP/cpu-after")
    line=$(grep '^RESULT ' "$TMP/wrk-$name.txt") \
        || { log "wrk $name gave no result"; cat "$TMP/wrk-$name.txt" >&2; line="RESULT p50_us=0 p99_us=0 requests=0 duration_us=1 non2xx=0 sock_errors=0 statuses=none"; }
    echo "$line vox_cpu_ms=$((${cpu% *} * 1000 / TICK)) pg_cpu_ms=$((${cpu#* } * 1000 / TICK)) idle_in_tx=$idle_tx"
}

pgb_run() { # name script clients -> "p50_us p99_us tps failed"
    local name=$1 script=$2 c=$3 j=2
    ((c < 2)) && j=1
    rm -f "$TMP/pgb-$name".*
    timeout $((DURATION + 60)) pgbench -n -M prepared -c "$c" -j "$j" -T "$DURATION" \
        -D th="$TOKEN_HASH" -D folder=INBOX -D after=0 -D lim=51 \
        -l --log-prefix="$TMP/pgb-$name" -f "$script" "$DB_URL" >"$TMP/pgbench-$name.txt" 2>&1 || true
    python3 - "$TMP" "pgb-$name" "$TMP/pgbench-$name.txt" <<'PY'
import glob, os, re, sys
tmp, prefix, out = sys.argv[1:4]
lat = []
for f in glob.glob(os.path.join(tmp, prefix + ".*")):
    with open(f) as fh:
        lat += [int(l.split()[2]) for l in fh if l.strip()]
lat.sort()
text = open(out).read()
tps = re.search(r"tps = ([\d.]+)", text)
failed = re.search(r"number of failed transactions: (\d+)", text)
if not lat:
    sys.stderr.write(text)
    print("0 0 0 ?")
else:
    print(lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))],
          tps.group(1) if tps else "0", failed.group(1) if failed else "?")
PY
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
rate() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.0f", n / (us / 1e6) }'; }
per_req() { awk -v ms="$1" -v n="$2" 'BEGIN { printf "%.0f", (n > 0 ? ms * 1000 / n : 0) }'; } # µs

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(ps -eo pcpu=,comm= | awk '$1 > 20 && $2 !~ /^(voxmail|postgres|wrk|pgbench)$/ { print $2 }' | sort -u | tr '\n' ' ')
[[ -n $busy ]] && log "warning: other busy processes share the CPUs: $busy"
rows=() notes=()
for set in all heavy; do
    for what in list mwi; do
        for c in $LEVELS; do
            log "$what ($set mailboxes), $c clients: voxmail ${DURATION}s, then pgbench ${DURATION}s"
            v=$(wrk_run "$what-$set-c$c" "$what" "$set" "$c")
            read -r pg50 pg99 pgtps pgfail < <(pgb_run "$what-$set-c$c" "$TMP/$what-$set.pgb" "$c")
            rows+=("$(printf '%-6s %-5s %3s | %8s %8s %7s %6s %6s | %8s %8s %7s | %7s' "$what" "$set" "$c" \
                "$(ms "$(field "$v" p50_us)")" "$(ms "$(field "$v" p99_us)")" \
                "$(rate "$(field "$v" requests)" "$(field "$v" duration_us)")" \
                "$(per_req "$(field "$v" vox_cpu_ms)" "$(field "$v" requests)")" \
                "$(per_req "$(field "$v" pg_cpu_ms)" "$(field "$v" requests)")" \
                "$(ms "$pg50")" "$(ms "$pg99")" "${pgtps%.*}" \
                "$(awk -v a="$(field "$v" p50_us)" -v b="$pg50" 'BEGIN { printf "%+.2f", (a - b) / 1000 }')")")
            notes+=("$what $set c$c: voxmail $(field "$v" requests) requests, non-2xx $(field "$v" non2xx), socket errors $(field "$v" sock_errors), statuses $(field "$v" statuses), sessions idle in transaction at the end $(field "$v" idle_in_tx); pgbench failed transactions $pgfail")
        done
    done
done

log "deposits, $DEPOSIT_CLIENTS clients, ${DURATION}s"
msgs_before=$(sql -c "SELECT count(*) FROM messages")
d=$(wrk_run "deposit-c$DEPOSIT_CLIENTS" deposit all "$DEPOSIT_CLIENTS")
msgs_after=$(sql -c "SELECT count(*) FROM messages")
bad_after=$(sql -c "SELECT count(*) FROM (SELECT dir FROM messages GROUP BY dir HAVING min(msgnum) <> 0 OR max(msgnum) <> count(*) - 1) d")
RSS_END=$(awk '/^VmRSS/ { print $2 }' "/proc/$VOX_PID/status")
HWM=$(awk '/^VmHWM/ { print $2 }' "/proc/$VOX_PID/status")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report --------------------------------------------------------------------------------------
kib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }
echo
echo "voxmail on PostgreSQL $(sql -c 'SHOW server_version'), $(date -u '+%Y-%m-%d %H:%M UTC'), voxmail $(git describe --always --dirty 2>/dev/null || echo '?')"
echo "$(nproc) CPUs shared by voxmail, PostgreSQL and the load generators; loopback; load average before $load_before, after $load_after${busy:+; other busy processes: $busy}"
echo "data: $(fact contexts) contexts, $(fact mailboxes) mailboxes, $(fact messages) messages (per mailbox p50/p90/p99/max $(fact per_mailbox_p50_p90_p99_max); heavy INBOX $(fact heavy_inbox_min_max)), $(fact email_jobs) email jobs, $(fact events) events"
echo "load: ${LOAD_S} s (INSERT ... SELECT), VACUUM (ANALYZE) ${VACUUM_S} s${BENCH_EXTRA_SQL:+; extra SQL (${EXTRA_S} s): $BENCH_EXTRA_SQL}"
echo
echo "size (MiB)               table  indexes    total"
while IFS='|' read -r name heap idx total; do
    printf '%-20s %10s %8s %8s\n' "$name" "$(mib "$heap")" "$(mib "$idx")" "$(mib "$total")"
done <"$TMP/sizes.txt"
echo
echo "latency ms, ${DURATION}s per row; voxmail = HTTP via wrk; pg = pgbench, the same SQL (prepared); all = random of 100,000 mailboxes, heavy = random of the 303 with 200-1,000 messages"
echo "CPU: µs of CPU per request, of the voxmail process and of the PostgreSQL backends serving it"
printf '%-6s %-5s %3s | %8s %8s %7s %6s %6s | %8s %8s %7s | %7s\n' what boxes c "vox p50" "vox p99" "req/s" "CPU" "pgCPU" "pg p50" "pg p99" "tps" "p50 gap"
echo "-----------------+------------------------------------------+----------------------------+--------"
printf '%s\n' "${rows[@]}"
echo
echo "deposits ($(basename "$BODY"), $(stat -c %s "$BODY") bytes, random mailboxes, $DEPOSIT_CLIENTS clients): p50 $(ms "$(field "$d" p50_us)") ms, p99 $(ms "$(field "$d" p99_us)") ms, $(rate "$(field "$d" requests)" "$(field "$d" duration_us)") deposits/s, CPU per deposit: voxmail $(per_req "$(field "$d" vox_cpu_ms)" "$(field "$d" requests)") µs, PostgreSQL $(per_req "$(field "$d" pg_cpu_ms)" "$(field "$d" requests)") µs; statuses $(field "$d" statuses), socket errors $(field "$d" sock_errors); messages $msgs_before -> $msgs_after; folders with msgnum not 0..n-1: $bad_after"
echo "voxmail RSS: $(kib "$RSS_START") MiB after start, $(kib "$RSS_END") MiB at the end, peak $(kib "$HWM") MiB"
echo
printf '%s\n' "${notes[@]}"
vox_warn=$(grep -cE '\b(WARN|ERROR)\b' "$TMP/voxmail.log" || true)
echo "voxmail log: $vox_warn WARN/ERROR lines"
((vox_warn)) && grep -E '\b(WARN|ERROR)\b' "$TMP/voxmail.log" | head -5
echo
echo "plans (generic, as prepared statements run them):"
grep -E '^==|Index|Seq Scan|Bitmap|Sort|Buffers|Execution Time|Rows Removed|Heap Fetches' "$TMP/plans.txt" | sed 's/^/  /'
T_END=$(date +%s)
echo
echo "time: build $((T_BUILT - T0)) s, the rest $((T_END - T_BUILT)) s"
exit 0
