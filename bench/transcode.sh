#!/usr/bin/env bash
# Transcoding benchmark: voxmail's in-process µ-law WAV → Ogg Opus vs. ffmpeg, opusenc and a raw
# libopus encode loop (the floor), on the same input; then the cost of fetching a cached rendition
# vs. the original over HTTP.
#
#   bash bench/transcode.sh          (from the repository root; ~2 min after the build)
#
# Input: fixtures/speech-60s-ulaw.wav (60 s of 8 kHz speech, µ-law WAV, made by fixtures/make.sh).
# Rows, each a whole process per file, REPEAT runs interleaved, median wall time:
#   voxmail transcode IN OUT.opus --format opus     (release build; 16 kbit/s, VOIP, 40 ms frames,
#                                                    complexity 8 = audio.opus_complexity default)
#   ffmpeg -i IN -c:a libopus -b:a 16k OUT.opus     (Debian ffmpeg + libopus 1.3.1)
#   opusenc --bitrate 16 PCM.wav OUT.opus           (opusenc refuses µ-law: its input is the 16-bit
#                                                    PCM WAV made beforehand, outside the timing)
#   floor, Rust: bench/opus_floor.rs — voxmail-codecs' encoder (unsafe-libopus), the very library
#                voxmail uses, over the decoded PCM, no container
#   floor, C:    bench/opus_floor.c — Debian's libopus 1.3.1 (libopus-dev), same settings
# and the same work timed inside the process (no exec, no file I/O): voxmail::audio::transcode and
# both encode loops. The floors hash their packets: equal hashes mean unsafe-libopus and C libopus
# produced the same bits.
#
# HTTP: `voxmail serve` on a temp data dir and config, the file deposited once over the API, the
# opus and wav-ulaw renditions fetched once (made and cached), then REPEAT_HTTP GETs of the original
# and of each cached rendition, interleaved (curl, time_total of each request). The wav-ulaw
# rendition of a µ-law WAV has the original's size, so the two compare like for like.
#
# Needs: cargo, gcc, pkg-config, libopus-dev, ffmpeg, opus-tools, curl, python3 (missing Debian
# packages are installed with apt-get). Everything runs on 127.0.0.1 under a temporary directory
# removed at the end, with the server this script started.
#
# Then, if valgrind is installed, the instructions each program executes (callgrind, one run each):
# exact where the times are noisy, and what voxmail executes beyond the encoder itself.
#
# Tunables (environment): REPEAT (20), REPEAT_HTTP (200), BENCH_INPUT (fixture path),
# BENCH_CALLGRIND=0 skips the instruction counts, BENCH_KEEP=1 keeps the temporary directory.
# CARGO_TARGET_DIR is honoured.
set -euo pipefail

REPEAT=${REPEAT:-20}
REPEAT_HTTP=${REPEAT_HTTP:-200}

cd "$(dirname "$0")/.."
ROOT=$(pwd)
INPUT=${BENCH_INPUT:-$ROOT/fixtures/speech-60s-ulaw.wav}

log() { printf '[transcode-bench] %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------------------------
missing=()
for pair in ffmpeg:ffmpeg opusenc:opus-tools gcc:gcc pkg-config:pkg-config curl:curl python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
pkg-config --exists opus 2>/dev/null || missing+=(libopus-dev)
if ((${#missing[@]})); then
    log "installing missing packages: ${missing[*]}"
    if [[ $EUID -ne 0 ]]; then
        log "not root: install them first (apt-get install ${missing[*]})"
        exit 1
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
[[ -f $INPUT ]] || { log "input $INPUT not found (bash fixtures/make.sh makes it)"; exit 1; }

# --- build ---------------------------------------------------------------------------------------
# shellcheck source=bench/lib.sh
source bench/lib.sh
VOXMAIL=$(voxmail_binary)
FLOOR_RS=$(bench_binary opus_floor)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-transcode.XXXXXX")
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

FLOOR_C=$TMP/opus_floor_c
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
gcc -O2 -o "$FLOOR_C" bench/opus_floor.c $(pkg-config --cflags --libs opus)

# --- inputs: the same decoded PCM for opusenc and the floors (made by voxmail, outside timing) ---
"$VOXMAIL" transcode "$INPUT" "$TMP/pcm.wav" --format wav
"$VOXMAIL" transcode "$INPUT" "$TMP/pcm.sln" --format sln
SECS=$(python3 -c "import os,sys; print(os.path.getsize(sys.argv[1]) / 2 / 8000)" "$TMP/pcm.sln")

# --- timed runs ----------------------------------------------------------------------------------
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
busy=$(ps -eo pcpu=,comm= | awk '$1 > 20 { print $2 }' | sort -u | tr '\n' ' ')
[[ -n $busy ]] && log "warning: other busy processes share the CPUs: $busy"
log "$REPEAT interleaved runs of each row"
python3 bench/transcode_runs.py --repeat "$REPEAT" \
    --row "voxmail=$VOXMAIL transcode $INPUT $TMP/vox.opus --format opus --bitrate 16000" \
    --row "ffmpeg=ffmpeg -nostdin -v error -y -i $INPUT -c:a libopus -b:a 16k $TMP/ffmpeg.opus" \
    --row "opusenc=opusenc --quiet --bitrate 16 $TMP/pcm.wav $TMP/opusenc.opus" \
    --row "floor-rs=$FLOOR_RS pcm $TMP/pcm.sln" \
    --row "floor-c=$FLOOR_C $TMP/pcm.sln" \
    --inproc "voxmail=$FLOOR_RS voxmail $INPUT" \
    --inproc "floor-rs=$FLOOR_RS pcm $TMP/pcm.sln" \
    --inproc "floor-c=$FLOOR_C $TMP/pcm.sln" \
    >"$TMP/runs.txt"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- instruction counts (valgrind callgrind; deterministic, unlike the times) -------------------
CALLGRIND=${BENCH_CALLGRIND:-1}
if [[ $CALLGRIND == 1 ]] && command -v valgrind >/dev/null 2>&1; then
    log "callgrind: instruction counts of one run each (~1 min)"
    cg() { # name command... -> prints "name instructions"
        local name=$1
        shift
        valgrind --tool=callgrind --callgrind-out-file="$TMP/cg-$name.out" "$@" >/dev/null 2>&1
        printf '%s %s\n' "$name" "$(sed -n 's/^summary: //p' "$TMP/cg-$name.out")"
    }
    {
        cg voxmail "$VOXMAIL" transcode "$INPUT" "$TMP/cg.opus" --format opus --bitrate 16000
        cg ffmpeg ffmpeg -nostdin -v error -y -i "$INPUT" -c:a libopus -b:a 16k "$TMP/cg-ff.opus"
        cg floor-rs "$FLOOR_RS" pcm "$TMP/pcm.sln"
        cg floor-c "$FLOOR_C" "$TMP/pcm.sln"
    } >"$TMP/callgrind.txt"
else
    : >"$TMP/callgrind.txt"
fi

# --- HTTP: original vs cached rendition ----------------------------------------------------------
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
TOML
vox() { env -u VOXMAIL_CONFIG "$VOXMAIL" --config "$TMP/voxmail.toml" "$@"; }
vox context create default >/dev/null
vox mailbox create 1001@default >/dev/null
TOKEN=$(vox apikey create --name bench --role pbx 2>/dev/null)
# Not through `vox`: a backgrounded function is a subshell, and killing it would leave the server
# running; with `env` (which execs it) $! is the server's own pid.
NO_COLOR=1 env -u VOXMAIL_CONFIG "$VOXMAIL" --config "$TMP/voxmail.toml" serve \
    >"$TMP/voxmail.log" 2>&1 &
VOX_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
    sleep 0.1
done
BASE=http://127.0.0.1:$PORT/v1/mailboxes/1001@default/messages
AUTH="Authorization: Bearer $TOKEN"
code=$(curl -s -o "$TMP/deposit.json" -w '%{http_code}' -X POST -H "$AUTH" \
    -H 'Content-Type: audio/wav' --data-binary "@$INPUT" "$BASE")
[[ $code == 201 ]] || { log "deposit: HTTP $code: $(cat "$TMP/deposit.json")"; exit 1; }
ID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$TMP/deposit.json")
ORIG_URL=$BASE/$ID/audio
OPUS_URL="$BASE/$ID/audio?format=opus"
ULAW_URL="$BASE/$ID/audio?format=wav-ulaw"
first=$(curl -s -o "$TMP/http.opus" -w '%{http_code} %{time_total}' -H "$AUTH" "$OPUS_URL")
[[ ${first%% *} == 200 ]] || { log "first opus fetch: HTTP ${first%% *}"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$AUTH" "$ULAW_URL")
[[ $code == 200 ]] || { log "first wav-ulaw fetch: HTTP $code"; exit 1; }
cmp -s "$TMP/http.opus" "$TMP/vox.opus" \
    && same_bytes="byte-identical to the CLI's" || same_bytes="DIFFERENT from the CLI's"
get() { curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' -H "$AUTH" "$1"; }
: >"$TMP/http-orig.txt"
: >"$TMP/http-opus.txt"
: >"$TMP/http-ulaw.txt"
for ((i = 0; i < REPEAT_HTTP; i++)); do
    get "$ORIG_URL" >>"$TMP/http-orig.txt"
    get "$OPUS_URL" >>"$TMP/http-opus.txt"
    get "$ULAW_URL" >>"$TMP/http-ulaw.txt"
done
kill -TERM "$VOX_PID" 2>/dev/null || true
wait "$VOX_PID" 2>/dev/null || true
VOX_PID=""

# --- report --------------------------------------------------------------------------------------
python3 - "$TMP/runs.txt" "$SECS" "$TMP" <<'PY'
import os, statistics, sys

runs, secs, tmp = sys.argv[1], float(sys.argv[2]), sys.argv[3]
res = {}
for line in open(runs):
    p = line.split()
    res[(p[1], p[2])] = p[3:]

names = {
    "voxmail": ("voxmail transcode --format opus", "voxmail::audio::transcode (probe, decode, Opus, Ogg)"),
    "ffmpeg": ("ffmpeg -c:a libopus -b:a 16k", None),
    "opusenc": ("opusenc --bitrate 16 (PCM WAV in)", None),
    "floor-rs": ("floor: unsafe-libopus loop (Rust)", "floor: unsafe-libopus encode loop"),
    "floor-c": ("floor: C libopus 1.3.1 loop", "floor: C libopus 1.3.1 encode loop"),
}
out = {"voxmail": "vox.opus", "ffmpeg": "ffmpeg.opus", "opusenc": "opusenc.opus"}
def ms(kind, k): return float(res[(kind, k)][0])

print(f"Input: 60 s of 8 kHz speech, µ-law WAV ({secs:.3f} s of audio); Opus 16 kbit/s mono.")
print("Whole process per file (median of the interleaved runs; CPU = user+sys of the process):")
print(f"{'':40} {'median ms':>10} {'min ms':>8} {'CPU ms':>8} {'x realtime':>11} {'output B':>9}")
for k, (label, _) in names.items():
    med, low, cpu = res[("process", k)]
    size = os.path.getsize(os.path.join(tmp, out[k])) if k in out else 0
    print(f"{label:40} {float(med):10.1f} {float(low):8.1f} {float(cpu):8.1f} "
          f"{secs * 1000 / float(med):10.0f}x {size if size else '-':>9}")
print()
print("Inside the process (no exec, no file I/O; median of the same number of runs):")
for k, (_, label) in names.items():
    if label is None:
        continue
    med, low, rest = res[("inproc", k)][0], res[("inproc", k)][1], res[("inproc", k)][3:]
    print(f"{label:55} {float(med):8.1f} ms {secs * 1000 / float(med):7.0f}x realtime  {' '.join(rest)}")
print()
v, f = ms("process", "voxmail"), ms("process", "ffmpeg")
print("Ratios:")
print(f"  ffmpeg / voxmail, whole process              {f / v:5.2f}x faster   (goal >= 2x)")
for kind in ("process", "inproc"):
    vv = ms(kind, "voxmail")
    for fl, name in (("floor-rs", "unsafe-libopus"), ("floor-c", "C libopus")):
        r = vv / ms(kind, fl)
        where = "whole process" if kind == "process" else "in process   "
        print(f"  voxmail / {name:15} floor, {where} {r:5.2f}   (goal <= 1.15){'' if r <= 1.15 else '  MISSED'}")
fr, fc = res[("inproc", "floor-rs")][3], res[("inproc", "floor-c")][3]
print(f"  floors' packets {'bit-identical' if fr == fc else 'DIFFER'}: Rust {fr}, C {fc}")

cg = dict(line.split() for line in open(os.path.join(tmp, "callgrind.txt")))
if cg:
    g = {k: int(v) for k, v in cg.items()}
    print()
    print("Instructions executed, whole process (valgrind callgrind, one run; exact, not timed):")
    for k, label in (("voxmail", "voxmail transcode --format opus"), ("ffmpeg", "ffmpeg -c:a libopus -b:a 16k"),
                     ("floor-rs", "floor: unsafe-libopus loop (Rust)"), ("floor-c", "floor: C libopus 1.3.1 loop")):
        print(f"  {label:40} {g[k] / 1e9:6.3f} G   voxmail / this {g['voxmail'] / g[k]:5.3f}")
    extra = g["voxmail"] - g["floor-rs"]
    print(f"  voxmail beyond its encoder floor (decode, Ogg, file I/O, process start): "
          f"{extra / 1e6:.0f} M = {100 * extra / g['voxmail']:.1f} % of its instructions")
PY
stats() { # file -> "p50 p90 max ms, size, statuses"
    python3 - "$1" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
t = sorted(float(r[1]) * 1000 for r in rows)
codes = sorted({r[0] for r in rows})
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
print(f"p50 {q(0.5):6.2f} ms  p90 {q(0.9):6.2f} ms  max {t[-1]:6.2f} ms  "
      f"{rows[0][2]:>7} B  HTTP {','.join(codes)}  ({len(t)} GETs)")
PY
}
echo
echo "HTTP GET over 127.0.0.1 (curl time_total, new connection each; $REPEAT_HTTP interleaved GETs each):"
printf '  %-34s %s\n' "original (µ-law WAV)" "$(stats "$TMP/http-orig.txt")"
printf '  %-34s %s\n' "cached rendition ?format=opus" "$(stats "$TMP/http-opus.txt")"
printf '  %-34s %s\n' "cached rendition ?format=wav-ulaw" "$(stats "$TMP/http-ulaw.txt")"
printf '  %-34s %s ms (transcode + store; the rendition is %s)\n' "first ?format=opus (not cached)" \
    "$(awk -v t="${first#* }" 'BEGIN { printf "%.2f", t * 1000 }')" "$same_bytes"
echo
echo "$(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'), voxmail $(git describe --always --dirty 2>/dev/null || echo '?');" \
    "load average before/after the timed runs: $load_before / $load_after${busy:+; other busy processes: $busy}"
