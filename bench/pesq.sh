#!/usr/bin/env bash
# Opus quality: narrowband PESQ (ITU-T P.862, PyPI `pesq`) of voxmail's Ogg Opus rendition vs. the
# source, next to ffmpeg's libopus at the same bitrate, on the same 60 s speech fixture.
#
#   bash bench/pesq.sh          (from the repository root; ~1 min after the build)
#
# - source: fixtures/speech-60s-ulaw.wav (8 kHz µ-law WAV); the reference signal is its 16-bit PCM
#   decoding (ffmpeg).
# - voxmail: `voxmail transcode SRC OUT.opus --format opus --bitrate 16000` (the code of
#   GET …/audio?format=opus: VOIP application, 20 ms frames, complexity 5 (audio.opus_complexity),
#   libopus 1.3.1 via unsafe-libopus).
# - ffmpeg: `ffmpeg -i SRC -c:a libopus -b:a 16k OUT.opus` (Debian libopus 1.3.1, its defaults:
#   application "audio"); also reported with `-application voip`, voxmail's setting.
# Every Opus file is decoded back to 8 kHz 16-bit mono by ffmpeg and scored against the reference
# (pesq.pesq(8000, ref, deg, "nb"); both cut to the shorter length).
# Exit status 1 if voxmail scores more than 0.1 MOS below ffmpeg (the issue's bound).
#
# Needs: cargo, ffmpeg, python3 with venv. `pesq`, numpy and scipy are installed into a venv under
# $CARGO_TARGET_DIR (or target/) on first use. Tunables: PESQ_BITRATE (16000), BENCH_INPUT,
# PESQ_VENV (venv directory), BENCH_KEEP=1 keeps the temporary directory.
set -euo pipefail

BITRATE=${PESQ_BITRATE:-16000}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
INPUT=${BENCH_INPUT:-$ROOT/fixtures/speech-60s-ulaw.wav}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${PESQ_VENV:-$TARGET/pesq-venv}

log() { printf '[pesq] %s\n' "$*" >&2; }

command -v ffmpeg >/dev/null 2>&1 || {
    log "installing ffmpeg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
}
if ! "$VENV/bin/python" -c 'import pesq, numpy, scipy' 2>/dev/null; then
    log "creating $VENV with pesq, numpy, scipy"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pesq numpy scipy
fi
log "cargo build --release"
cargo build --release --quiet --bin voxmail
VOXMAIL=$TARGET/release/voxmail

TMP=$(mktemp -d "${TMPDIR:-/tmp}/voxmail-pesq.XXXXXX")
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT

FF=(ffmpeg -nostdin -v error -y)
kbps=$((BITRATE / 1000))
"${FF[@]}" -i "$INPUT" -c:a pcm_s16le "$TMP/ref.wav"
"$VOXMAIL" transcode "$INPUT" "$TMP/voxmail.opus" --format opus --bitrate "$BITRATE"
"${FF[@]}" -i "$INPUT" -c:a libopus -b:a "${kbps}k" "$TMP/ffmpeg.opus"
"${FF[@]}" -i "$INPUT" -c:a libopus -b:a "${kbps}k" -application voip "$TMP/ffmpeg-voip.opus"
for f in voxmail ffmpeg ffmpeg-voip; do
    "${FF[@]}" -i "$TMP/$f.opus" -ar 8000 -ac 1 -c:a pcm_s16le "$TMP/$f.wav"
done
"$VENV/bin/python" bench/pesq_score.py "$TMP/ref.wav" voxmail="$TMP/voxmail.wav" \
    ffmpeg="$TMP/ffmpeg.wav" ffmpeg-voip="$TMP/ffmpeg-voip.wav" >"$TMP/scores.txt"

score() { awk -v n="$1" '$1 == n { print $2 }' "$TMP/scores.txt"; }
size() { stat -c %s "$TMP/$1.opus"; }
vox=$(score voxmail) ff=$(score ffmpeg) ffv=$(score ffmpeg-voip)
echo "Narrowband PESQ (P.862 MOS-LQO) vs the source, $(basename "$INPUT"), Opus ${kbps} kbit/s mono:"
printf '  %-52s %6s  %7s B\n' "voxmail transcode --format opus" "$vox" "$(size voxmail)"
printf '  %-52s %6s  %7s B\n' "ffmpeg -c:a libopus -b:a ${kbps}k" "$ff" "$(size ffmpeg)"
printf '  %-52s %6s  %7s B\n' "ffmpeg -c:a libopus -b:a ${kbps}k -application voip" "$ffv" "$(size ffmpeg-voip)"
diff=$(awk -v a="$vox" -v b="$ff" 'BEGIN { printf "%+.3f", a - b }')
echo "  voxmail - ffmpeg: $diff MOS (bound: no worse than -0.100)"
if awk -v a="$vox" -v b="$ff" 'BEGIN { exit !(a < b - 0.1) }'; then
    echo "FAIL: voxmail's Opus is more than 0.1 MOS below ffmpeg's"
    exit 1
fi
echo "ok"
