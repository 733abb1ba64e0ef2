#!/usr/bin/env bash
# Upload memory: peak resident memory of voxmail with CLIENTS (200) streaming uploads in flight at
# once, per accepted format, beside nginx taking the same uploads.
#
#   bash bench/upload_memory.sh          (from the repository root; ~4 min after the build)
#
# - Inputs: fixtures/speech-60s-ulaw.wav (60 s of speech) as Ogg Opus, Ogg Vorbis, MP3, FLAC and
#   WebM (ffmpeg), and as is (µ-law WAV), in a temporary directory removed at the end.
# - Client: bench/upload_memory.py — CLIENTS connections at once, each sends its request head,
#   then the body in pieces of PIECE_BYTES spread over SECS seconds, so all are in flight
#   together; the server's RSS (VmRSS, summed over nginx's master and workers) is read every
#   50 ms. Halfway, a 3 s µ-law WAV deposit is timed beside them (voxmail only).
# - voxmail: `voxmail serve`, release build, a fresh temp data dir (SQLite + fs audio) and a fresh
#   process per format, all defaults but a mailbox with maxmsg 9999 and no per-key or per-source
#   upload cap (one key and one address stand for 200 PBX nodes); POST of the body to
#   /v1/mailboxes/1001@default/messages with a pbx key.
# - nginx (Debian nginx-light or nginx): its own config and prefix, not the system service; POST
#   to a location that buffers the whole body (proxy_request_buffering, 16 KiB in memory, the rest
#   in a temp file) before passing it to a second server block of the same nginx that answers
#   201 — what a reverse proxy in front of voxmail does with each upload.
#
# Needs: cargo, ffmpeg, nginx, curl, python3 (Debian packages are installed with apt-get when
# missing). Tunables: CLIENTS (200), SECS (20), PIECE_BYTES (16384), FORMATS (all six),
# BENCH_VOXMAIL (measure that binary instead of building this tree's), BENCH_KEEP=1 keeps the
# temporary directory. CARGO_TARGET_DIR is honoured.
set -euo pipefail

CLIENTS=${CLIENTS:-200}
SECS=${SECS:-20}
PIECE_BYTES=${PIECE_BYTES:-16384}
FORMATS=${FORMATS:-"opus vorbis mp3 flac webm wav"}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SPEECH=$ROOT/fixtures/speech-60s-ulaw.wav

log() { printf '[upload-memory] %s\n' "$*" >&2; }
export PATH="$PATH:/usr/sbin"
missing=()
for pair in ffmpeg:ffmpeg curl:curl python3:python3 nginx:nginx-light; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    [[ $EUID -eq 0 ]] || { log "not root: install them first (apt-get install ${missing[*]})"; exit 1; }
    # Keep the package's own nginx service from starting (port 80).
    added_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh
VOXMAIL=$(voxmail_binary)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-umem.XXXXXX")
VOX_PID=""
NGINX_PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in $VOX_PID $NGINX_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
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

# --- inputs --------------------------------------------------------------------------------------
log "making the inputs (60 s of speech per format)"
FF=(ffmpeg -nostdin -v error -y -i "$SPEECH")
"${FF[@]}" -c:a libopus -b:a 24k "$TMP/in.opus"
"${FF[@]}" -c:a libvorbis "$TMP/in.ogg"
"${FF[@]}" -c:a libmp3lame -b:a 32k "$TMP/in.mp3"
"${FF[@]}" -c:a flac "$TMP/in.flac"
"${FF[@]}" -c:a libopus -b:a 24k -f webm "$TMP/in.webm"
cp "$SPEECH" "$TMP/in.wav"
"${FF[@]}" -t 3 -c:a copy "$TMP/probe.wav"
declare -A FILE=([opus]=in.opus [vorbis]=in.ogg [mp3]=in.mp3 [flac]=in.flac [webm]=in.webm [wav]=in.wav)
declare -A TYPE=([opus]=audio/ogg [vorbis]=audio/ogg [mp3]=audio/mpeg [flac]=audio/flac
    [webm]=audio/webm [wav]=audio/wav)

# --- nginx (own config, own prefix, not the system service) --------------------------------------
NGX=$TMP/nginx
NGINX_PORT=$(free_port)
SINK_PORT=$(free_port)
mkdir -p "$NGX/logs" "$NGX/client_body" "$NGX/tmp"
user_line=""
[[ $EUID -eq 0 ]] && user_line="user root root;" # workers must write to our root-owned temp dir
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
    client_body_buffer_size 16k;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location = /ping { return 204; }
        location / {
            proxy_request_buffering on;
            proxy_pass http://127.0.0.1:$SINK_PORT;
        }
    }
    server {
        listen 127.0.0.1:$SINK_PORT;
        location / { return 201; }
    }
}
EOF
nginx -c "$NGX/nginx.conf" -p "$NGX" -e "$NGX/logs/error.log" -g 'daemon off;' &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/ping"
nginx_pids() { echo "$NGINX_PID,$(pgrep -P "$NGINX_PID" | paste -sd, -)"; }

# --- voxmail: a fresh server per format ----------------------------------------------------------
start_voxmail() { # -> sets VOX_PID, VOX_PORT, TOKEN
    local dir=$TMP/vox-$1
    VOX_PORT=$(free_port)
    mkdir -p "$dir/data"
    cat >"$dir/voxmail.toml" <<TOML
data_dir = "$dir/data"
[http]
listen = "127.0.0.1:$VOX_PORT"
# One key and one address stand for 200 PBX nodes here: their per-key and per-source upload caps
# (128, 64) would answer most of the uploads 429 before any memory is spent.
max_uploads_per_key = 0
max_uploads_per_source = 0
TOML
    local vox=(env -u VOXMAIL_CONFIG "$VOXMAIL" --config "$dir/voxmail.toml")
    "${vox[@]}" context create default >/dev/null
    "${vox[@]}" mailbox create 1001@default --maxmsg 9999 >/dev/null
    TOKEN=$("${vox[@]}" apikey create --name bench --role pbx 2>/dev/null)
    NO_COLOR=1 "${vox[@]}" serve >"$dir/voxmail.log" 2>&1 &
    VOX_PID=$!
    wait_http "http://127.0.0.1:$VOX_PORT/healthz"
}
stop_voxmail() {
    kill -TERM "$VOX_PID" 2>/dev/null || true
    wait "$VOX_PID" 2>/dev/null || true
    VOX_PID=""
}

run() { # port path pids content-type file [extra args] -> JSON line
    local port=$1 path=$2 pids=$3 ct=$4 file=$5
    shift 5
    local size pieces
    size=$(stat -c %s "$file")
    pieces=$(((size + PIECE_BYTES - 1) / PIECE_BYTES))
    python3 "$ROOT/bench/upload_memory.py" --port "$port" --path "$path" --pids "$pids" \
        --content-type "$ct" --body "$file" --clients "$CLIENTS" --seconds "$SECS" \
        --pieces "$pieces" "$@"
}

echo "$CLIENTS concurrent streaming uploads of 60 s of speech, each over ${SECS} s in pieces of" \
    "$PIECE_BYTES bytes; peak RSS (MiB) of the server while they are in flight"
printf '%-7s %8s | %-31s %-22s %-14s | %-26s\n' '' '' 'voxmail: RSS at start, peak' statuses \
    'WAV beside' 'nginx: peak RSS, statuses'
printf '%-7s %8s | %8s %8s %13s %-22s %-14s | %8s %-17s\n' format bytes start peak \
    'peak - start' '' '' peak ''

for fmt in $FORMATS; do
    file=$TMP/${FILE[$fmt]}
    log "$fmt: voxmail"
    start_voxmail "$fmt"
    vox=$(run "$VOX_PORT" /v1/mailboxes/1001@default/messages "$VOX_PID" "${TYPE[$fmt]}" "$file" \
        --token "$TOKEN" --probe-path /v1/mailboxes/1001@default/messages \
        --probe-body "$TMP/probe.wav")
    stop_voxmail
    log "$fmt: nginx"
    ngx=$(run "$NGINX_PORT" "/upload/{i}" "$(nginx_pids)" "${TYPE[$fmt]}" "$file")
    python3 - "$fmt" "$(stat -c %s "$file")" "$vox" "$ngx" <<'PY'
import json, sys
fmt, size, v, n = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
st = lambda d: " ".join(f"{k}x{c}" for k, c in sorted(d["statuses"].items()))
grew = v["peak_mib"] - v["baseline_mib"]
print(f"{fmt:7} {size:>8} | {v['baseline_mib']:8.1f} {v['peak_mib']:8.1f} {grew:13.1f} {st(v):22} "
      f"{v['probe_status']} in {v['probe_ms']:>5} ms | {n['peak_mib']:8.1f} {st(n):17}")
PY
done
echo
echo "$(nproc) CPUs, $(date -u "+%Y-%m-%d %H:%M UTC"), $VOXMAIL (tree: $(git describe --always --dirty 2>/dev/null || echo "?")), $(nginx -v 2>&1)"
