#!/usr/bin/env bash
# Keep-alive fetch benchmark (issue 16): voxmail vs nginx serving the same bytes, one kept-alive
# connection, same client, same run.
#
#   bash bench/keepalive.sh          (from the repository root)
#
# voxmail (release build, embedded SQLite default, fs audio, fresh temp data dir) gets a context,
# a mailbox and one deposit of fixtures/speech-60s-ulaw.wav over the REST API; then, on ONE
# connection reused for every request:
#   - the message audio (the stored original, 480 058 B) and its Opus rendition (?format=opus,
#     rendered and cached by a first fetch before the runs);
#   - nginx (sendfile on, tcp_nodelay on, keepalive) serving the very bytes voxmail sent, as static
#     files from the temp dir;
# measured with `wrk -t1 -c1 -d10s` (p50/p99 latency, req/s) and with curl fetching each URL 20
# times over one connection (per-fetch time_total, and the number of new connections, which must
# be 1). Without TCP_NODELAY on the server a response's last segment waits for the client's
# delayed ACK: ~40 ms per fetch on a kept-alive connection.
#
# Needs: cargo, python3, curl, wrk, nginx. Missing wrk/nginx/curl/python3 are installed with
# apt-get (Debian), only if absent.
# voxmail binary: $BENCH_VOXMAIL if set; else ${CARGO_TARGET_DIR:-target}/release/voxmail when it
# is newer than every source file (src/, crates/, migrations/, Cargo.toml, Cargo.lock, build.rs),
# otherwise `cargo build --release` first (BENCH_NO_BUILD=1 uses the existing binary regardless).
# Tunables: BENCH_CONNECTIONS (wrk's kept-alive connections, default 1; 2 wrk threads above 1),
# BENCH_DURATION (seconds per wrk run, default 10), BENCH_ROUNDS (1; rounds alternate
# voxmail and nginx), BENCH_FETCHES (20 curl fetches), BENCH_KEEP=1 keeps the temp dir (logs, raw
# outputs). Everything runs on 127.0.0.1; the script stops the servers it started and removes its
# temp dir. Figures only mean something on an otherwise idle machine: it warns about busy processes.
set -euo pipefail

DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-1}
CONNS=${BENCH_CONNECTIONS:-1}
WRK_THREADS=1
((CONNS > 1)) && WRK_THREADS=2
FETCHES=${BENCH_FETCHES:-20}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
FIXTURE=$ROOT/fixtures/speech-60s-ulaw.wav

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
    # Keep the package's own nginx service from starting (port 80).
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

# --- voxmail binary ------------------------------------------------------------------------------
VOXMAIL=${BENCH_VOXMAIL:-${CARGO_TARGET_DIR:-$ROOT/target}/release/voxmail}
if [[ -z ${BENCH_VOXMAIL:-} && ${BENCH_NO_BUILD:-0} != 1 ]]; then
    newer=""
    if [[ -x $VOXMAIL ]]; then
        newer=$(find src crates migrations Cargo.toml Cargo.lock build.rs -newer "$VOXMAIL" \
            -type f -not -path '*/target/*' -print -quit 2>/dev/null || true)
    fi
    if [[ ! -x $VOXMAIL || -n $newer ]]; then
        log "cargo build --release${newer:+ ($newer is newer than the binary)}"
        cargo build --release --locked --quiet --bin voxmail
    fi
fi
[[ -x $VOXMAIL ]] || { log "no voxmail binary at $VOXMAIL"; exit 1; }
log "voxmail binary: $VOXMAIL ($(date -u -r "$VOXMAIL" '+%Y-%m-%d %H:%M UTC'))"

# --- temp dir, cleanup ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-keepalive.XXXXXX")
VOX_PID="" NGINX_PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $VOX_PID ]] && kill -0 "$VOX_PID" 2>/dev/null; then
        kill -TERM "$VOX_PID" 2>/dev/null || true
        wait "$VOX_PID" 2>/dev/null || true
    fi
    if [[ -n $NGINX_PID ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
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

# --- voxmail: a fresh data dir, an admin key, then everything else over the REST API ------------
VOX_DATA=$TMP/voxmail
VOX_PORT=$(free_port)
VOX=http://127.0.0.1:$VOX_PORT
TOKEN=$("$VOXMAIL" --data-dir "$VOX_DATA" apikey create --name bench --role admin 2>/dev/null)
AUTH="Authorization: Bearer $TOKEN"
NO_COLOR=1 "$VOXMAIL" serve --data-dir "$VOX_DATA" --listen "127.0.0.1:$VOX_PORT" \
    >"$TMP/voxmail.log" 2>&1 &
VOX_PID=$!
wait_http "$VOX/healthz"

api() { # expected-status curl-args... -> body on stdout
    local want=$1 code
    shift
    code=$(curl -s -o "$TMP/api.out" -w '%{http_code}' -H "$AUTH" "$@")
    [[ $code == "$want" ]] || { log "HTTP $code (want $want) for $*: $(head -c 400 "$TMP/api.out")"; exit 1; }
    cat "$TMP/api.out"
}
api 201 -H 'Content-Type: application/json' -d '{"name":"default"}' "$VOX/v1/contexts" >/dev/null
api 201 -H 'Content-Type: application/json' -d '{"mailbox":"1001","context":"default"}' \
    "$VOX/v1/mailboxes" >/dev/null
ID=$(api 201 -H 'Content-Type: audio/wav' --data-binary "@$FIXTURE" \
    "$VOX/v1/mailboxes/1001@default/messages" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
AUDIO_PATH=/v1/mailboxes/1001@default/messages/$ID/audio
OPUS_PATH=$AUDIO_PATH?format=opus

# --- nginx: the same bytes as static files -------------------------------------------------------
NGX=$TMP/nginx
NGINX_PORT=$(free_port)
NGINX=http://127.0.0.1:$NGINX_PORT
mkdir -p "$NGX/logs" "$NGX/html" "$NGX/tmp"
# The bytes voxmail serves (the Opus fetch also renders and caches the rendition).
download() { # url file
    local code
    code=$(curl -s -o "$2" -w '%{http_code}' -H "$AUTH" "$1")
    [[ $code == 200 ]] || { log "HTTP $code for GET $1"; exit 1; }
}
download "$VOX$AUDIO_PATH" "$NGX/html/msg.wav"
download "$VOX$OPUS_PATH" "$NGX/html/msg.opus"
cmp -s "$FIXTURE" "$NGX/html/msg.wav" || { log "voxmail's original differs from the fixture"; exit 1; }
WAV_BYTES=$(stat -c %s "$NGX/html/msg.wav")
OPUS_BYTES=$(stat -c %s "$NGX/html/msg.opus")
user_line=""
[[ $EUID -eq 0 ]] && user_line="user root root;" # workers read our root-owned temp dir
cat >"$NGX/nginx.conf" <<EOF
$user_line
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log $NGX/logs/access.log combined buffer=64k;
    client_body_temp_path $NGX/tmp/client_body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    types { audio/wav wav; audio/ogg opus; }
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $NGX/html;
        location = /ping { access_log off; return 204; }
    }
}
EOF
nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/logs/error.log" -g 'daemon off;' &
NGINX_PID=$!
wait_http "$NGINX/ping"
curl -s "$NGINX/msg.opus" | cmp -s - "$NGX/html/msg.opus" || { log "nginx serves other bytes"; exit 1; }

# --- wrk: one thread, one connection, keep-alive ------------------------------------------------
cat >"$TMP/fetch.lua" <<'LUA'
-- Counts non-200 answers; prints p50/p99 (µs) from wrk's latency histogram and the error counts.
local threads = {}
function setup(thread)
   table.insert(threads, thread)
end
function init(args)
   non200 = 0
end
function response(status, headers, body)
   if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency, requests)
   local other = 0
   for _, t in ipairs(threads) do other = other + (t:get("non200") or 0) end
   local e = summary.errors
   io.write(string.format(
      "RESULT p50_us=%d p99_us=%d requests=%d duration_us=%d non200=%d sock_errors=%d\n",
      latency:percentile(50), latency:percentile(99), summary.requests, summary.duration, other,
      e.connect + e.read + e.write + e.timeout))
end
LUA

wrk_run() { # name url -> RESULT line
    local out=$TMP/wrk-$1.txt line
    timeout $((DURATION + 60)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency \
        -H "$AUTH" -s "$TMP/fetch.lua" "$2" >"$out" 2>&1 || true
    line=$(grep '^RESULT ' "$out" || true)
    if [[ -z $line ]]; then
        log "wrk $1 gave no result:"
        cat "$out" >&2
        line="RESULT p50_us=0 p99_us=0 requests=0 duration_us=1 non200=0 sock_errors=0"
    fi
    echo "$line"
}

# --- curl: the same URL N times on one connection -----------------------------------------------
curl_run() { # url -> "p50_ms max_ms new_connections all_ms..."
    local args=()
    for ((i = 0; i < FETCHES; i++)); do args+=(-o /dev/null "$1"); done
    curl -s -H "$AUTH" -w '%{http_code} %{num_connects} %{time_total}\n' "${args[@]}" |
        python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
n = int(sys.argv[1])
bad = sum(r[0] != "200" for r in rows)
if len(rows) != n or bad:
    print(f"ERROR {len(rows)} fetches, {bad} not 200")
    sys.exit()
t = [float(r[2]) * 1000 for r in rows]
s = sorted(t)
p50 = (s[(n - 1) // 2] + s[n // 2]) / 2
conns = sum(int(r[1]) for r in rows)
print(f"{p50:.2f} {s[-1]:.2f} {conns} " + " ".join(f"{x:.2f}" for x in t))
' "$FETCHES"
}

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'; }
rps() { awk -v n="$1" -v us="$2" 'BEGIN { printf "%.0f", n / (us / 1e6) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(ps -eo pcpu=,comm= | awk '$1 > 20 && $2 !~ /^(voxmail|nginx|wrk|curl)$/ { print $2 }' | sort -u | tr '\n' ' ')
[[ -n $busy ]] && log "warning: other busy processes share the CPUs: $busy"

declare -A R C
for ((round = 1; round <= ROUNDS; round++)); do
    for what in original opus; do
        if [[ $what == original ]]; then vpath=$AUDIO_PATH npath=/msg.wav; else vpath=$OPUS_PATH npath=/msg.opus; fi
        log "round $round, $what: voxmail wrk (${DURATION}s)"
        R[$round,$what,voxmail]=$(wrk_run "r$round-$what-voxmail" "$VOX$vpath")
        log "round $round, $what: nginx wrk (${DURATION}s)"
        R[$round,$what,nginx]=$(wrk_run "r$round-$what-nginx" "$NGINX$npath")
        C[$round,$what,voxmail]=$(curl_run "$VOX$vpath")
        C[$round,$what,nginx]=$(curl_run "$NGINX$npath")
    done
done

# --- report --------------------------------------------------------------------------------------
echo
echo "Keep-alive fetches, one connection: voxmail vs nginx (sendfile, tcp_nodelay) serving the same bytes"
echo "original: fixtures/speech-60s-ulaw.wav as stored ($WAV_BYTES B); opus: its cached ?format=opus rendition ($OPUS_BYTES B)"
echo "wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}') -t$WRK_THREADS -c$CONNS -d${DURATION}s; curl $(curl -V | head -1 | awk '{print $2}'), $FETCHES fetches of one URL on one connection"
echo "127.0.0.1, $(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'); voxmail $(git describe --always --dirty 2>/dev/null || echo '?'); load before: $load_before${busy:+; other busy processes: $busy}"
echo
printf '%-6s %-8s | %-7s | %8s %8s %7s | %8s %8s %7s | %6s\n' round what client "vox p50" "vox p99" "req/s" "ngx p50" "ngx p99" "req/s" "req/s"
printf '%-6s %-8s | %-7s | %8s %8s %7s | %8s %8s %7s | %6s\n' "" "" "" ms ms "" ms ms "" "vox/ngx"
printf '%s\n' "----------------+---------+----------------------------+----------------------------+--------"
for ((round = 1; round <= ROUNDS; round++)); do
    for what in original opus; do
        v=${R[$round,$what,voxmail]} n=${R[$round,$what,nginx]}
        vr=$(rps "$(field "$v" requests)" "$(field "$v" duration_us)")
        nr=$(rps "$(field "$n" requests)" "$(field "$n" duration_us)")
        printf '%-6s %-8s | %-7s | %8s %8s %7s | %8s %8s %7s | %6s\n' "$round" "$what" wrk \
            "$(ms "$(field "$v" p50_us)")" "$(ms "$(field "$v" p99_us)")" "$vr" \
            "$(ms "$(field "$n" p50_us)")" "$(ms "$(field "$n" p99_us)")" "$nr" "$(ratio "$vr" "$nr")"
        read -r vp vmax vconn _ <<<"${C[$round,$what,voxmail]}"
        read -r np nmax nconn _ <<<"${C[$round,$what,nginx]}"
        printf '%-6s %-8s | %-7s | %8s %8s %7s | %8s %8s %7s |\n' "$round" "$what" curl \
            "$vp" "$vmax" "conn=$vconn" "$np" "$nmax" "conn=$nconn"
    done
done
echo "(curl rows: p50 and max of the $FETCHES per-fetch times in ms; conn = new connections, 1 = all reused)"
echo
echo "curl per-fetch times, ms:"
for ((round = 1; round <= ROUNDS; round++)); do
    for what in original opus; do
        for srv in voxmail nginx; do
            read -r _ _ _ all <<<"${C[$round,$what,$srv]}"
            printf '  round %s %-8s %-7s %s\n' "$round" "$what" "$srv" "$all"
        done
    done
done
echo
for ((round = 1; round <= ROUNDS; round++)); do
    for what in original opus; do
        for srv in voxmail nginx; do
            line=${R[$round,$what,$srv]}
            if [[ $(field "$line" non200) != 0 || $(field "$line" sock_errors) != 0 ]]; then
                echo "FAILURES: round $round $what $srv: non-200 $(field "$line" non200), socket errors $(field "$line" sock_errors)"
            fi
        done
    done
done
vox_warn=$(sed 's/\x1b\[[0-9;]*m//g' "$TMP/voxmail.log" | grep -cE '\b(WARN|ERROR)\b' || true)
echo "voxmail log: $vox_warn WARN/ERROR lines"
((vox_warn)) && sed 's/\x1b\[[0-9;]*m//g' "$TMP/voxmail.log" | grep -E '\b(WARN|ERROR)\b' | head -5
ngx_err=$(grep -c '\[\(error\|crit\|alert\|emerg\)\]' "$NGX/logs/error.log" || true)
echo "nginx error log: $ngx_err error lines"
((ngx_err)) && head -5 "$NGX/logs/error.log"
exit 0
