#!/usr/bin/env bash
# Deposit latency benchmark: voxmail vs. its durability floor and nginx WebDAV PUT, same client, same
# body, same concurrency.
#
#   bash bench/deposit_latency.sh          (from the repository root)
#
# For each concurrency level (1, 16, 64 clients) it runs wrk for a fixed time against
#   - voxmail: POST /v1/mailboxes/<n>@default/messages, spread over 64 mailboxes (maxmsg 9999);
#   - the floor: bench/deposit_floor.rs at the same URLs — the same promise as voxmail (201 once
#              the audio file, its directory and one SQLite INSERT, WAL + synchronous=FULL, are
#              durable; the INSERTs serialized) and nothing else (issue 16: voxmail >= 0.8 of it);
#   - nginx:   PUT /dav/<thread>/<n>.wav with `dav_methods PUT; create_full_put_path on;`, i.e. the
#              baseline "receive the body and write it to a file" (nginx does not fsync);
# with the same body: a 30 s 8 kHz mono µ-law WAV (240 058 bytes) of a 440 Hz tone, generated here.
# It prints p50/p99 latency, throughput and the status counts; any non-2xx answer is reported.
#
# Needs: cargo, python3, curl, wrk, nginx. Missing wrk/nginx/curl/python3 are installed with
# apt-get (Debian), only if absent. Builds voxmail with `cargo build --release` (BENCH_VOXMAIL names
# another binary) and the floor with `cargo bench --bench deposit_floor --no-run`.
# Everything runs on 127.0.0.1 under a temporary directory that is removed at the end, with the
# server processes it started.
#
# Tunables (environment): BENCH_DURATION (seconds per run, default 10), BENCH_LEVELS ("1 16 64"),
# BENCH_MAILBOXES (64), BENCH_KEEP=1 keeps the temporary directory (logs, wrk outputs).
# BENCH_POSTGRES=postgres://user@host:port (a server where that user may create databases) runs
# voxmail and the floor on PostgreSQL instead of SQLite: two fresh databases, voxbench_vox and
# voxbench_floor, dropped again at the end (the floor's INSERT then commits on PostgreSQL).
# VOXMAIL_* variables reach the server and the admin commands, e.g.
# VOXMAIL_DATABASE__MAX_CONNECTIONS=1 to try a single SQLite connection.
# The figures are only meaningful on an otherwise idle machine: the script warns when other
# processes are busy (e.g. a cargo build in another shell).
set -euo pipefail

DURATION=${BENCH_DURATION:-10}
LEVELS=${BENCH_LEVELS:-"1 16 64"}
MAILBOXES=${BENCH_MAILBOXES:-64}
MAILBOX_BASE=1000

cd "$(dirname "$0")/.."
ROOT=$(pwd)

log() { printf '[bench] %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------------
missing=()
for pair in wrk:wrk nginx:nginx curl:curl python3:python3; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    if [[ $EUID -ne 0 ]]; then
        log "not root: install ${missing[*]} first (apt-get install ${missing[*]})"
        exit 1
    fi
    # Keep the package's own nginx service from starting (port 80): a policy-rc.d that forbids
    # starting services, unless one is already in place.
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi
export PATH="$PATH:/usr/sbin"
if [[ -e /run/nginx.pid ]] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
    log "warning: a system nginx is running (pid $(cat /run/nginx.pid)); it is left alone"
fi

# --- build ---------------------------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source bench/lib.sh
VOXMAIL=$(voxmail_binary)
FLOOR=$(bench_binary deposit_floor)

# --- temp dir, cleanup ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-bench.XXXXXX")
VOX_PID="" NGINX_PID="" FLOOR_PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $VOX_PID ]] && kill -0 "$VOX_PID" 2>/dev/null; then
        kill -TERM "$VOX_PID" 2>/dev/null || true
        wait "$VOX_PID" 2>/dev/null || true
    fi
    if [[ -n $FLOOR_PID ]] && kill -0 "$FLOOR_PID" 2>/dev/null; then
        kill -TERM "$FLOOR_PID" 2>/dev/null || true
        wait "$FLOOR_PID" 2>/dev/null || true
    fi
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [[ -n ${BENCH_POSTGRES:-} ]]; then
        for db in voxbench_vox voxbench_floor; do
            psql -q "$BENCH_POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
        done
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_http() { # url
    for _ in $(seq 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    log "nothing answers at $1"
    return 1
}

# --- the body: 30 s of a 440 Hz tone, 8 kHz mono G.711 µ-law WAV ---------------------------------
BODY=$TMP/tone-30s-ulaw.wav
python3 - "$BODY" <<'PY'
import math, struct, sys

RATE, SECS = 8000, 30

def ulaw(sample):  # 16-bit linear -> G.711 µ-law (ITU-T G.711, as in Sun's g711.c)
    BIAS, CLIP = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, CLIP) + BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF

n = RATE * SECS
data = bytes(ulaw(int(12000 * math.sin(2 * math.pi * 440 * i / RATE))) for i in range(n))
fmt = struct.pack("<HHIIHHH", 7, 1, RATE, RATE, 1, 8, 0)          # µ-law, 18-byte fmt
fact = struct.pack("<I", n)
riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt \
     + b"fact" + struct.pack("<I", 4) + fact + b"data" + struct.pack("<I", n) + data
with open(sys.argv[1], "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", len(riff)) + riff)
PY
BODY_BYTES=$(stat -c %s "$BODY")

# --- databases -----------------------------------------------------------------------------------
FLOOR_DB=() DB_KIND="SQLite (WAL, synchronous=FULL)"
if [[ -n ${BENCH_POSTGRES:-} ]]; then
    for db in voxbench_vox voxbench_floor; do
        psql -q "$BENCH_POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
        psql -q "$BENCH_POSTGRES/postgres" -c "CREATE DATABASE $db" >/dev/null
    done
    export VOXMAIL_DATABASE__URL=$BENCH_POSTGRES/voxbench_vox
    FLOOR_DB=("$BENCH_POSTGRES/voxbench_floor")
    DB_KIND="PostgreSQL $(psql -tA "$BENCH_POSTGRES/postgres" -c 'SHOW server_version' | cut -d' ' -f1) (synchronous_commit=$(psql -tA "$BENCH_POSTGRES/postgres" -c 'SHOW synchronous_commit'))"
fi

# --- voxmail -------------------------------------------------------------------------------------
VOX_DATA=$TMP/voxmail
VOX_PORT=$(free_port)
log "voxmail: data dir $VOX_DATA, $MAILBOXES mailboxes"
"$VOXMAIL" --data-dir "$VOX_DATA" context create default >/dev/null
TOKEN=$("$VOXMAIL" --data-dir "$VOX_DATA" apikey create --name bench --role pbx 2>/dev/null)
for ((i = 0; i < MAILBOXES; i++)); do
    "$VOXMAIL" --data-dir "$VOX_DATA" mailbox create "$((MAILBOX_BASE + i))@default" --maxmsg 9999 >/dev/null
done
NO_COLOR=1 "$VOXMAIL" serve --data-dir "$VOX_DATA" --listen "127.0.0.1:$VOX_PORT" >"$TMP/voxmail.log" 2>&1 &
VOX_PID=$!
wait_http "http://127.0.0.1:$VOX_PORT/healthz"

# --- the durability floor ----------------------------------------------------------------------
FLOOR_PORT=$(free_port)
"$FLOOR" "$TMP/floor" "127.0.0.1:$FLOOR_PORT" "${FLOOR_DB[@]}" >"$TMP/floor.log" 2>&1 &
FLOOR_PID=$!
wait_http "http://127.0.0.1:$FLOOR_PORT/healthz"

# --- nginx (own config, own prefix, not the system service) --------------------------------------
NGX=$TMP/nginx
NGINX_PORT=$(free_port)
mkdir -p "$NGX/logs" "$NGX/dav" "$NGX/client_body" "$NGX/tmp"
user_line=""
[[ $EUID -eq 0 ]] && user_line="user root root;"  # workers must write to our root-owned temp dir
cat >"$NGX/nginx.conf" <<EOF
$user_line
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $NGX/client_body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    client_max_body_size 64m;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $NGX;
        location = /ping { return 204; }
        location /dav/ {
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
        }
    }
}
EOF
nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/logs/error.log" -g 'daemon off;' &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/ping"

# --- preflight: one request each must succeed ----------------------------------------------------
code=$(curl -s -o "$TMP/preflight-voxmail.json" -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: audio/wav' --data-binary "@$BODY" \
    "http://127.0.0.1:$VOX_PORT/v1/mailboxes/$MAILBOX_BASE@default/messages")
[[ $code == 201 ]] || { log "voxmail preflight deposit: HTTP $code: $(cat "$TMP/preflight-voxmail.json")"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: audio/wav' \
    --data-binary "@$BODY" "http://127.0.0.1:$FLOOR_PORT/v1/mailboxes/$MAILBOX_BASE@default/messages")
[[ $code == 201 ]] || { log "floor preflight deposit: HTTP $code"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: audio/wav' \
    --data-binary "@$BODY" "http://127.0.0.1:$NGINX_PORT/dav/preflight/x.wav")
[[ $code == 201 ]] || { log "nginx preflight PUT: HTTP $code"; exit 1; }
cmp -s "$BODY" "$NGX/dav/preflight/x.wav" || { log "nginx stored a different body"; exit 1; }

# --- runs ----------------------------------------------------------------------------------------
export BENCH_BODY=$BODY BENCH_TOKEN=$TOKEN BENCH_MAILBOXES=$MAILBOXES BENCH_MAILBOX_BASE=$MAILBOX_BASE

run() { # mode port clients [name] -> prints the RESULT line; raw output kept in $TMP
    local mode=$1 port=$2 c=$3 name=${4:-$1} t=2
    ((c < 2)) && t=1
    sync # start each run with no dirty pages left over from the previous one
    BENCH_MODE=$mode BENCH_THREADS=$t timeout $((DURATION + 60)) \
        wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 30s --latency -s "$ROOT/bench/deposit.lua" \
        "http://127.0.0.1:$port/" >"$TMP/wrk-$name-c$c.txt" 2>&1 || true
    local line
    line=$(grep '^RESULT ' "$TMP/wrk-$name-c$c.txt" || true)
    if [[ -z $line ]]; then
        log "wrk $name -c$c gave no result:"
        cat "$TMP/wrk-$name-c$c.txt" >&2
        line="RESULT p50_us=0 p99_us=0 requests=0 duration_us=1 non2xx=0 sock_errors=0 statuses=none"
    fi
    echo "$line"
}

field() { # line name
    sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"
}

ms() { awk -v us="$1" 'BEGIN { printf "%.1f", us / 1000 }'; }
rps() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.1f", n / (us / 1e6) }'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(ps -eo pcpu=,comm= | awk '$1 > 20 && $2 !~ /^(voxmail|nginx|wrk|deposit_floor)/ { print $2 }' | sort -u | tr '\n' ' ')
[[ -n $busy ]] && log "warning: other busy processes share the CPUs: $busy"
rows=() notes=()
for c in $LEVELS; do
    log "-c$c: voxmail (${DURATION}s)"
    v=$(run voxmail "$VOX_PORT" "$c")
    log "-c$c: floor (${DURATION}s)"
    f=$(run voxmail "$FLOOR_PORT" "$c" floor)
    log "-c$c: nginx (${DURATION}s)"
    n=$(run nginx "$NGINX_PORT" "$c")
    # Keep the disk use bounded; nginx does not need its files. (A PUT cut short when wrk stopped
    # may still be landing, hence the second try and the tolerance.)
    sleep 0.2
    rm -rf "${NGX:?}/dav/t"* 2>/dev/null || rm -rf "${NGX:?}/dav/t"* || true
    vr=$(rps "$(field "$v" requests)" "$(field "$v" duration_us)")
    fr=$(rps "$(field "$f" requests)" "$(field "$f" duration_us)")
    rows+=("$(printf '%7s | %8s %8s %7s | %8s %8s %7s | %6s | %8s %8s %7s' "$c" \
        "$(ms "$(field "$v" p50_us)")" "$(ms "$(field "$v" p99_us)")" "$vr" \
        "$(ms "$(field "$f" p50_us)")" "$(ms "$(field "$f" p99_us)")" "$fr" \
        "$(awk -v a="$vr" -v b="$fr" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" \
        "$(ms "$(field "$n" p50_us)")" "$(ms "$(field "$n" p99_us)")" \
        "$(rps "$(field "$n" requests)" "$(field "$n" duration_us)")")")
    notes+=("$(printf '%7s | voxmail: %6s requests, non-2xx %s, socket errors %s, statuses %s | floor: %6s requests, non-2xx %s, statuses %s | nginx: %6s requests, non-2xx %s, socket errors %s, statuses %s' \
        "$c" "$(field "$v" requests)" "$(field "$v" non2xx)" "$(field "$v" sock_errors)" "$(field "$v" statuses)" \
        "$(field "$f" requests)" "$(field "$f" non2xx)" "$(field "$f" statuses)" \
        "$(field "$n" requests)" "$(field "$n" non2xx)" "$(field "$n" sock_errors)" "$(field "$n" statuses)")")
done

# --- report --------------------------------------------------------------------------------------
cpus=$(nproc)
echo
echo "voxmail deposit latency vs its durability floor and nginx WebDAV PUT — body: 30 s 8 kHz µ-law WAV, $BODY_BYTES bytes;"
echo "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), ${DURATION}s per run, 127.0.0.1, $cpus CPUs, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "voxmail $(git describe --always --dirty 2>/dev/null || echo '?'); load average before the runs: $load_before${busy:+; other busy processes: $busy}"
echo "database: $DB_KIND. voxmail and the floor fsync the audio file and its directory and commit the row per deposit; nginx does not fsync."
echo
printf '%7s | %8s %8s %7s | %8s %8s %7s | %6s | %8s %8s %7s\n' clients "vox p50" "vox p99" "req/s" "flr p50" "flr p99" "req/s" "vox/fl" "ngx p50" "ngx p99" "req/s"
printf '%7s | %8s %8s %7s | %8s %8s %7s | %6s | %8s %8s %7s\n' "" "ms" "ms" "" "ms" "ms" "" "req/s" "ms" "ms" ""
printf '%s\n' "--------+---------------------------+---------------------------+--------+--------------------------"
printf '%s\n' "${rows[@]}"
echo
echo "status counts (any non-2xx is a failure to report):"
printf '%s\n' "${notes[@]}"
vox_warn=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/voxmail.log" | grep -cE '\b(WARN|ERROR)\b' || true)
echo
echo "voxmail log: $vox_warn WARN/ERROR lines$( ((vox_warn)) && printf '; first ones:')"
((vox_warn)) && sed 's/\x1b\[[0-9;]*m//g' "$TMP/voxmail.log" | grep -E '\b(WARN|ERROR)\b' | head -5
ngx_err=$(grep -c '\[\(error\|crit\|alert\|emerg\)\]' "$NGX/logs/error.log" || true)
echo "nginx error log: $ngx_err error lines"
((ngx_err)) && head -5 "$NGX/logs/error.log"
exit 0
