#!/usr/bin/env bash
# Opus quality: PESQ (ITU-T P.862 narrowband, P.862.2 wideband; PyPI `pesq`) of voxmail's Ogg Opus
# rendition vs. the source, next to ffmpeg's libopus at the same bitrate, on two speakers, as a PBX
# stores them (8 kHz µ-law, narrowband) and as a browser or softphone records them (16 kHz,
# wideband).
#
#   bash bench/pesq.sh          (from the repository root; ~1 min after the build)
#
# - sources: speaker 1 = fixtures/speech-60s-ulaw.wav (espeak-ng `en`, the text of
#   fixtures/speech-60s.txt, 8 kHz µ-law); speaker 2 = the same text by espeak-ng `en-us+f3` at
#   165 words/min, leading silence removed, cut at 60 s, as 8 kHz µ-law; and both speakers at
#   16 kHz 16-bit PCM (wideband), made here from espeak-ng's 22.05 kHz output with ffmpeg.
#   The reference signal of each is its 16-bit PCM decoding.
# - voxmail: `voxmail transcode SRC OUT.opus --format opus --bitrate 16000` (the code of
#   GET …/audio?format=opus: VOIP application, 40 ms frames, complexity 8 = audio.opus_complexity,
#   libopus 1.3.1 via unsafe-libopus, encoded at the source rate).
# - ffmpeg: `ffmpeg -i SRC -c:a libopus -b:a 16k OUT.opus` (Debian libopus 1.3.1, its defaults:
#   application "audio", complexity 10, 20 ms frames); also with `-application voip`.
# Every Opus file is decoded back by ffmpeg to the source's rate, 16-bit mono, and scored against
# the reference (pesq.pesq(rate, ref, deg, "nb" or "wb"); both cut to the shorter length).
# Exit status 1 if voxmail scores below either ffmpeg row on any source (the issue's bound: at
# least as good as ffmpeg's).
# PESQ_SWEEP=1 then scores the settings voxmail chose from, on the same four sources, with
# bench/opus_settings.c (Debian's libopus-dev, the same libopus 1.3.1 code; gcc): application
# voip/audio x complexity 5/6/8/10 x 20/40/60 ms frames, PESQ and the encoder's CPU time each
# (decoded by libopus directly, so a few thousandths off the ffmpeg-decoded scores above).
#
# Needs: cargo, ffmpeg, espeak-ng, python3 with venv (and for the sweep gcc, libopus-dev; missing
# Debian packages are installed with apt-get). `pesq`, numpy and scipy are installed into a venv under $CARGO_TARGET_DIR (or
# target/) on first use. Tunables: PESQ_BITRATE (16000), PESQ_VENV (venv directory),
# BENCH_VOXMAIL (score that binary instead of building this tree's), BENCH_KEEP=1 keeps the
# temporary directory.
set -euo pipefail

BITRATE=${PESQ_BITRATE:-16000}
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
VENV=${PESQ_VENV:-$TARGET/pesq-venv}

log() { printf '[pesq] %s\n' "$*" >&2; }

missing=()
pairs=(ffmpeg:ffmpeg espeak-ng:espeak-ng)
[[ ${PESQ_SWEEP:-0} == 1 ]] && pairs+=(gcc:gcc /usr/include/opus/opus.h:libopus-dev)
for pair in "${pairs[@]}"; do
    { command -v "${pair%%:*}" || [[ -e ${pair%%:*} ]]; } >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! "$VENV/bin/python" -c 'import pesq, numpy, scipy' 2>/dev/null; then
    log "creating $VENV with pesq, numpy, scipy"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pesq numpy scipy
fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
VOXMAIL=$(voxmail_binary)

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
TEXT=$(cat fixtures/speech-60s.txt)
espeak-ng -v en -s 160 -w "$TMP/s1.wav" "$TEXT"
espeak-ng -v en-us+f3 -s 165 -w "$TMP/s2.wav" "$TEXT"
TRIM=(-af silenceremove=start_periods=1:start_threshold=-50dB -t 60 -ac 1)
cp fixtures/speech-60s-ulaw.wav "$TMP/s1-nb.wav"
"${FF[@]}" -i "$TMP/s2.wav" "${TRIM[@]}" -ar 8000 -c:a pcm_mulaw "$TMP/s2-nb.wav"
"${FF[@]}" -i "$TMP/s1.wav" "${TRIM[@]}" -ar 16000 -c:a pcm_s16le "$TMP/s1-wb.wav"
"${FF[@]}" -i "$TMP/s2.wav" "${TRIM[@]}" -ar 16000 -c:a pcm_s16le "$TMP/s2-wb.wav"

failed=0
echo "PESQ (P.862 MOS-LQO: narrowband at 8 kHz, P.862.2 wideband at 16 kHz) vs the source, 60 s of speech, Opus ${kbps} kbit/s mono"
printf '%-10s %-4s | %8s %8s %8s | %8s %8s | %9s %9s %9s\n' source band voxmail ffmpeg ff-voip \
    "vox-ff" "vox-voip" "vox B" "ffmpeg B" "voip B"
for src in s1-nb s2-nb s1-wb s2-wb; do
    band=${src##*-}
    rate=8000
    [[ $band == wb ]] && rate=16000
    in="$TMP/$src.wav"
    "${FF[@]}" -i "$in" -c:a pcm_s16le "$TMP/$src-ref.wav"
    "$VOXMAIL" transcode "$in" "$TMP/$src-voxmail.opus" --format opus --bitrate "$BITRATE"
    "${FF[@]}" -i "$in" -c:a libopus -b:a "${kbps}k" "$TMP/$src-ffmpeg.opus"
    "${FF[@]}" -i "$in" -c:a libopus -b:a "${kbps}k" -application voip "$TMP/$src-voip.opus"
    args=()
    for f in voxmail ffmpeg voip; do
        "${FF[@]}" -i "$TMP/$src-$f.opus" -ar "$rate" -ac 1 -c:a pcm_s16le "$TMP/$src-$f.wav"
        args+=("$f=$TMP/$src-$f.wav")
    done
    "$VENV/bin/python" bench/pesq_score.py "$band" "$TMP/$src-ref.wav" "${args[@]}" >"$TMP/$src.txt"
    score() { awk -v n="$1" '$1 == n { print $2 }' "$TMP/$src.txt"; }
    vox=$(score voxmail) ff=$(score ffmpeg) ffv=$(score voip)
    printf '%-10s %-4s | %8s %8s %8s | %+8.3f %+8.3f | %9s %9s %9s\n' "$src" "$band" "$vox" "$ff" "$ffv" \
        "$(awk -v a="$vox" -v b="$ff" 'BEGIN { print a - b }')" \
        "$(awk -v a="$vox" -v b="$ffv" 'BEGIN { print a - b }')" \
        "$(stat -c %s "$TMP/$src-voxmail.opus")" "$(stat -c %s "$TMP/$src-ffmpeg.opus")" \
        "$(stat -c %s "$TMP/$src-voip.opus")"
    if awk -v a="$vox" -v b="$ff" -v c="$ffv" 'BEGIN { exit !(a < b || a < c) }'; then
        failed=1
    fi
done
echo "$(nproc) CPUs, $(date -u '+%Y-%m-%d %H:%M UTC'), $VOXMAIL ($("$VOXMAIL" --version 2>/dev/null | head -1)), $(ffmpeg -version | head -1 | cut -d' ' -f1-3)"
if ((failed)); then
    echo "FAIL: voxmail's Opus scores below ffmpeg's on at least one source"
    exit 1
fi
echo "ok: voxmail's Opus scores at least as well as ffmpeg's (both applications) on every source"

[[ ${PESQ_SWEEP:-0} == 1 ]] || exit 0
gcc -O2 -o "$TMP/opus_settings" bench/opus_settings.c -lopus
echo
for src in s1-nb s2-nb s1-wb s2-wb; do
    "${FF[@]}" -i "$TMP/$src-ref.wav" -f s16le "$TMP/$src.s16"
done
echo "Settings (libopus 1.3.1, ${kbps} kbit/s): PESQ per source; CPU ms of the encoder for speaker 1's 60 s at 8 and 16 kHz"
printf '%-5s %4s %5s | %7s %7s %7s %7s | %7s %7s\n' app cplx frame s1-nb s2-nb s1-wb s2-wb "cpu 8k" "cpu 16k"
for app in voip audio; do
    for c in 5 6 8 10; do
        for ms in 20 40 60; do
            row=() cpu=()
            for src in s1-nb s2-nb s1-wb s2-wb; do
                band=${src##*-} rate=8000
                [[ $band == wb ]] && rate=16000
                read -r _ ms_cpu < <("$TMP/opus_settings" "$TMP/$src.s16" "$TMP/out.s16" "$rate" "$app" "$c" "$ms" "$BITRATE")
                "${FF[@]}" -f s16le -ar "$rate" -ac 1 -i "$TMP/out.s16" -c:a pcm_s16le "$TMP/out.wav"
                row+=("$("$VENV/bin/python" bench/pesq_score.py "$band" "$TMP/$src-ref.wav" x="$TMP/out.wav" | cut -d' ' -f2)")
                cpu+=("$ms_cpu")
            done
            printf '%-5s %4s %3sms | %7s %7s %7s %7s | %7s %7s\n' "$app" "$c" "$ms" "${row[@]}" "${cpu[0]}" "${cpu[2]}"
        done
    done
done
