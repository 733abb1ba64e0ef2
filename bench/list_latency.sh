#!/usr/bin/env bash
# Listing benchmark: the first page of a mailbox with 100,000 messages against one with 10.
#
#   bash bench/list_latency.sh          (from the repository root)
#
# Builds voxmail (release), deposits one real message into each of two mailboxes over HTTP, stops
# the server, clones the big mailbox's message row 99,999 times straight in SQLite (listing reads
# rows only, never audio), starts the server again and measures with wrk:
#   GET /v1/mailboxes/{small|big}@default/messages?limit=10            (first page)
#   GET /v1/mailboxes/big@default/messages?limit=10&cursor=<row 90,000> (a deep page)
# Pages are 10 messages, so both mailboxes return the same amount of JSON.
# Peer, same run: the same keyset query executed directly by SQLite (Python's sqlite3), so the
# HTTP/JSON cost is visible beside the database's own. EXPLAIN QUERY PLAN shows the index used.
# Needs cargo, python3, curl, wrk (installed with apt-get if absent). Loopback only.
# Tunables: BENCH_DURATION (seconds per wrk run, default 5), BENCH_ROWS (100000).
set -euo pipefail

DURATION=${BENCH_DURATION:-5}
ROWS=${BENCH_ROWS:-100000}
cd "$(dirname "$0")/.."

log() { printf '[bench] %s\n' "$*" >&2; }

for pkg in wrk curl python3; do
    if ! command -v "$pkg" >/dev/null 2>&1; then
        log "installing $pkg"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
    fi
done

log "building voxmail (release)"
cargo build --release --quiet
BIN=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/voxmail

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
export VOXMAIL_LOG__FILTER=warn
"$BIN" --data-dir "$TMP/data" context create default >/dev/null
TOKEN=$("$BIN" --data-dir "$TMP/data" apikey create --name bench --role pbx 2>/dev/null)
"$BIN" --data-dir "$TMP/data" mailbox create small@default --maxmsg 9999 >/dev/null
"$BIN" --data-dir "$TMP/data" mailbox create big@default --maxmsg 9999 >/dev/null

start_server() {
    "$BIN" serve --data-dir "$TMP/data" --listen "127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -fsS "$BASE/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "server did not start"; cat "$TMP/server.log"; exit 1
}
stop_server() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }

python3 -c 'import sys; sys.stdout.buffer.write(bytes([0xFF])*8000)' >"$TMP/one.ulaw"
start_server
for box in small big; do
    n=$([[ $box == small ]] && echo 10 || echo 1)
    for _ in $(seq "$n"); do
        curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: audio/PCMU' \
            --data-binary @"$TMP/one.ulaw" "$BASE/v1/mailboxes/$box@default/messages"
    done
done
stop_server

log "cloning the big mailbox's message to $ROWS rows"
python3 - "$TMP/data/voxmail.db" "$ROWS" <<'PY'
import sqlite3, sys
db, rows = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
cols = [r[1] for r in c.execute("PRAGMA table_info(messages)")]
(mid,) = c.execute("SELECT uniqueid FROM mailboxes WHERE mailbox='big'").fetchone()
tmpl = dict(zip(cols, c.execute("SELECT * FROM messages WHERE mailbox_id=?", (mid,)).fetchone()))
def row(i):
    r = dict(tmpl)
    # UUIDv7-shaped ids that sort after the real one.
    r["id"] = "ffff%04x-%04x-7000-8000-%012x" % (i >> 16, i & 0xFFFF, i)
    r["msgnum"] = i
    r["msg_id"] = "%d-%08x" % (r["origtime"], i)
    return [r[k] for k in cols]
q = "INSERT INTO messages (%s) VALUES (%s)" % (",".join(cols), ",".join("?" * len(cols)))
c.executemany(q, (row(i) for i in range(1, rows)))
c.commit()
print(c.execute("SELECT COUNT(*) FROM messages WHERE mailbox_id=?", (mid,)).fetchone()[0], "rows in big", file=sys.stderr)
PY

start_server
DEEP=$(python3 -c "print('ffff%04x-%04x-7000-8000-%012x' % ($((ROWS*9/10)) >> 16, $((ROWS*9/10)) & 0xFFFF, $((ROWS*9/10))))")

run_wrk() { # name url
    local out
    out=$(wrk -t1 -c4 -d"${DURATION}s" --latency -H "Authorization: Bearer $TOKEN" "$2")
    python3 - "$1" <<PY
import re, sys
out = """$out"""
def ms(label):
    m = re.search(r"\s%s\s+([\d.]+)(us|ms|s)" % label, out)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print("%-34s p50 %7.2f ms   p99 %7.2f ms   %8s req/s   non-2xx %s" % (
    sys.argv[1], ms("50%"), ms("99%"), rps, non2xx.group(1) if non2xx else 0))
PY
}

echo
echo "== voxmail over HTTP (wrk -c4, ${DURATION}s each; pages of 10 messages, as the small box holds)"
run_wrk "small (10 messages), first page" "$BASE/v1/mailboxes/small@default/messages?limit=10"
run_wrk "big ($ROWS messages), first page" "$BASE/v1/mailboxes/big@default/messages?limit=10"
run_wrk "big, page at row $((ROWS*9/10))" "$BASE/v1/mailboxes/big@default/messages?limit=10&cursor=$DEEP"
run_wrk "big, first page of 50" "$BASE/v1/mailboxes/big@default/messages?limit=50"
stop_server

echo
echo "== peer: the same keyset query in SQLite directly (python3 sqlite3, 2000 runs each, LIMIT 11)"
python3 - "$TMP/data/voxmail.db" "$DEEP" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
q = ("SELECT * FROM messages WHERE mailbox_id = ? AND id > ? ORDER BY id LIMIT 11")
for box, after in (("small", ""), ("big", ""), ("big", sys.argv[2])):
    (mid,) = c.execute("SELECT uniqueid FROM mailboxes WHERE mailbox=?", (box,)).fetchone()
    ts = []
    for _ in range(2000):
        t = time.perf_counter(); c.execute(q, (mid, after)).fetchall(); ts.append(time.perf_counter() - t)
    ts.sort()
    label = "%s%s" % (box, ", deep page" if after else ", first page")
    print("%-34s p50 %7.3f ms   p99 %7.3f ms" % (label, ts[1000] * 1000, ts[1979] * 1000))
print("plan:", " | ".join(r[3] for r in c.execute("EXPLAIN QUERY PLAN " + q, ("x", ""))))
PY
