#!/usr/bin/env bash
# Rendition memory: peak resident memory of making a rendition from a 30 s and a 10 min recording
# (48 kHz stereo, 16-bit WAV and FLAC). Renditions stream (decoder → resampler → encoder, WAV
# headers patched at the end), so the peak must not grow with the recording's length.
#
#   bash bench/rendition_memory.sh          (from the repository root; ~3 min after the build)
#
# - CLI: `voxmail transcode IN OUT --format F` for opus, wav (48 kHz, 115 MB out for 10 min) and
#   wav49 (resampled to 8 kHz): each a whole process; its peak RSS (GNU time's %M).
# - Server: `voxmail serve` (temp data dir; maxsecs and max_body_bytes raised for the long input),
#   both FLACs deposited; WARMUP rounds of the short one (a round: its opus, wav and wav49
#   renditions made by a first fetch, then removed from the cache), then rounds of the short and
#   the long one in turn; the server's VmHWM (peak RSS since start) after each. Rounds of the long
#   recording must not raise it more than rounds of the short one.
#
# Inputs are made by ffmpeg from fixtures/speech-60s-ulaw.wav (looped, upsampled, duplicated to two
# channels) in a temporary directory removed at the end. Needs: cargo, ffmpeg, curl, python3,
# GNU time (Debian packages are installed with apt-get when missing).
# Tunables: LONG_SECS (600), SHORT_SECS (30), WARMUP (20), BENCH_VOXMAIL (measure that binary instead of building
# this tree's, e.g. an older build for comparison), BENCH_KEEP=1 keeps the temporary directory.
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

LONG_SECS=${LONG_SECS:-600}
SHORT_SECS=${SHORT_SECS:-30}
WARMUP=${WARMUP:-20}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SPEECH=$ROOT/fixtures/speech-60s-ulaw.wav

log() { printf '[rendition-memory] %s\n' "$*" >&2; }
missing=()
for pair in ffmpeg:ffmpeg curl:curl python3:python3 /usr/bin/time:time; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    [[ $EUID -eq 0 ]] || { log "not root: install them first (apt-get install ${missing[*]})"; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# shellcheck source=bench/lib.sh
source bench/lib.sh
VOXMAIL=$(voxmail_binary)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-rmem.XXXXXX")
VOX_PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $VOX_PID ]] && kill -0 "$VOX_PID" 2>/dev/null; then
        kill -TERM "$VOX_PID" 2>/dev/null || true
        wait "$VOX_PID" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- inputs --------------------------------------------------------------------------------------
log "making ${SHORT_SECS} s and ${LONG_SECS} s inputs (48 kHz stereo WAV and FLAC)"
FF=(ffmpeg -nostdin -v error -y -stream_loop -1 -i "$SPEECH" -ar 48000 -ac 2)
for len in short long; do
    secs=$SHORT_SECS
    [[ $len == long ]] && secs=$LONG_SECS
    "${FF[@]}" -t "$secs" -c:a pcm_s16le "$TMP/$len.wav"
    "${FF[@]}" -t "$secs" -c:a flac "$TMP/$len.flac"
done

# --- CLI: peak RSS of one process per rendition ---------------------------------------------------
log "voxmail transcode, one process per rendition"
python3 - "$VOXMAIL" "$TMP" "$SHORT_SECS" "$LONG_SECS" <<'PY'
import os, subprocess, sys, time

vox, tmp, short, long_ = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def run(argv):
    # GNU time, not wait4 here: a child forked from Python counts Python's own pages in its
    # ru_maxrss (the peak is kept across exec).
    rss = os.path.join(tmp, "rss.txt")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-o", rss, "-f", "%M"] + argv,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ms = (time.perf_counter() - t0) * 1e3
    if p.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {p.stderr.decode(errors='replace').strip()}")
    return int(open(rss).read().split()[-1]) / 1024, ms  # MiB, ms

print(f"voxmail transcode, whole process: peak RSS (MiB) and wall time; "
      f"input 48 kHz stereo, {short} s vs {long_} s")
print(f"{'input':7} {'output':7} {'short MiB':>10} {'long MiB':>9} {'growth':>8} "
      f"{'short ms':>9} {'long ms':>9} {'long output B':>14}")
for ext in ("wav", "flac"):
    for fmt in ("opus", "wav", "wav49"):
        res = {}
        for length in ("short", "long"):
            out = os.path.join(tmp, f"{length}-{ext}.{fmt}")
            res[length] = run([vox, "transcode", os.path.join(tmp, f"{length}.{ext}"), out,
                               "--format", fmt]) + (os.path.getsize(out),)
            os.remove(out)
        (s_mib, s_ms, _), (l_mib, l_ms, l_size) = res["short"], res["long"]
        print(f"{ext:7} {fmt:7} {s_mib:10.1f} {l_mib:9.1f} {l_mib - s_mib:+8.1f} "
              f"{s_ms:9.0f} {l_ms:9.0f} {l_size:14}")
PY

# --- server: VmHWM around rendition fetches ------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
DATA=$TMP/data
mkdir -p "$DATA"
cat >"$TMP/voxmail.toml" <<TOML
data_dir = "$DATA"
[http]
listen = "127.0.0.1:$PORT"
max_body_bytes = 1073741824
[voicemail]
default_maxsecs = $((LONG_SECS + 60))
TOML
vox() { env -u VOXMAIL_CONFIG "$VOXMAIL" --config "$TMP/voxmail.toml" "$@"; }
vox context create default >/dev/null
vox mailbox create 1001@default >/dev/null
TOKEN=$(vox apikey create --name bench --role pbx 2>/dev/null)
# Not through `vox`: a backgrounded function is a subshell, and killing it would leave the server
# running; with `env` (which execs it) $! is the server's own pid, also for /proc/PID/status.
NO_COLOR=1 env -u VOXMAIL_CONFIG "$VOXMAIL" --config "$TMP/voxmail.toml" serve \
    >"$TMP/voxmail.log" 2>&1 &
VOX_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.1
done
BASE=http://127.0.0.1:$PORT/v1/mailboxes/1001@default/messages
AUTH="Authorization: Bearer $TOKEN"
hwm() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$VOX_PID/status"; }
deposit() { # file -> message id
    local code
    code=$(curl -s -o "$TMP/deposit.json" -w '%{http_code}' -X POST -H "$AUTH" \
        -H 'Content-Type: audio/flac' --data-binary "@$1" "$BASE")
    [[ $code == 201 ]] || { log "deposit of $1: HTTP $code: $(cat "$TMP/deposit.json")"; exit 1; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/deposit.json"
}
fetch() { # id format -> "bytes ms"
    curl -s -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' -H "$AUTH" \
        "$BASE/$1/audio?format=$2" | awk '$1 != 200 { exit 1 } { printf "%d %.0f", $2, $3 * 1000 }'
}
# One round: the opus, wav and wav49 renditions of a recording made (first fetch), then their
# cached blobs removed so that the next round makes them again.
round() { # id -> "ms per rendition, comma-separated"
    local f size ms times=()
    for f in opus wav wav49; do
        read -r size ms < <(fetch "$1" "$f") || true
        [[ -n ${ms:-} ]] || { log "fetch of ?format=$f failed"; exit 1; }
        times+=("$f ${ms} ms")
    done
    find "$DATA/audio" -name '*.r1-*' -delete
    local IFS=,
    echo "${times[*]}"
}
echo
echo "voxmail serve: VmHWM (peak RSS since start, MiB); each round makes the opus, wav and wav49"
echo "renditions of one FLAC deposit (first fetch), then removes them from the cache"
printf '  %-46s %6s MiB\n' "started" "$(hwm)"
SHORT_ID=$(deposit "$TMP/short.flac")
LONG_ID=$(deposit "$TMP/long.flac")
printf '  %-46s %6s MiB\n' "deposited the ${SHORT_SECS} s and ${LONG_SECS} s FLACs" "$(hwm)"
# The allocator's arenas and caches and the blocking pool's threads grow over the first rounds
# whatever the length, then level off: warm up on the short recording first.
for ((i = 0; i < WARMUP; i++)); do round "$SHORT_ID" >/dev/null; done
printf '  %-46s %6s MiB\n' "$WARMUP warm-up rounds of the ${SHORT_SECS} s recording" "$(hwm)"
for len in short long short long short long; do
    id=$SHORT_ID secs=$SHORT_SECS
    [[ $len == long ]] && id=$LONG_ID secs=$LONG_SECS
    times=$(round "$id")
    printf '  %-46s %6s MiB   (%s)\n' "a round of the ${secs} s recording" "$(hwm)" "$times"
done
kill -TERM "$VOX_PID" 2>/dev/null || true
wait "$VOX_PID" 2>/dev/null || true
VOX_PID=""
echo
echo "$(nproc) CPUs, $(date -u "+%Y-%m-%d %H:%M UTC"), $VOXMAIL (tree: $(git describe --always --dirty 2>/dev/null || echo "?"))"
