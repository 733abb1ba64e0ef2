#!/usr/bin/env bash
# Writes the fuzzer's seed corpus, fixtures/fuzz-seeds/: one tiny, valid file per input format the
# decoder takes (100 ms of the greeting in fixtures/hello-pcm16.wav), plus the bad bodies. Each
# file is small so the fuzzer mutates headers rather than audio; the whole set is ~30 KB.
#
#   bash fuzz/make-seeds.sh          (from the repository root; needs sox, ffmpeg, python3)
#
# Its outputs are committed; run it only to change the seeds. Not deterministic for the compressed
# formats across tool versions (that does not matter for a seed corpus).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=fixtures/hello-pcm16.wav
OUT=fixtures/fuzz-seeds
mkdir -p "$OUT"
rm -f "$OUT"/seed-*
SOX=(sox -R -D -V1 "$SRC")
CUT=(trim 0.5 0.1)
FF=(ffmpeg -nostdin -v error -y -bitexact -ss 0.5 -t 0.1 -i "$SRC")

"${SOX[@]}" -e u-law -b 8 -t wav "$OUT/seed-ulaw.wav" "${CUT[@]}"
"${SOX[@]}" -e a-law -b 8 -t wav "$OUT/seed-alaw.wav" "${CUT[@]}"
"${SOX[@]}" -e signed -b 16 -t wav "$OUT/seed-pcm16.wav" "${CUT[@]}"
"${SOX[@]}" -e signed -b 16 -r 16000 -t wav "$OUT/seed-pcm16-16k.wav" "${CUT[@]}"
"${SOX[@]}" -e unsigned -b 8 -t wav "$OUT/seed-pcm8.wav" "${CUT[@]}"
"${SOX[@]}" -e signed -b 24 -t wav "$OUT/seed-pcm24-extensible.wav" "${CUT[@]}"
"${SOX[@]}" -e signed -b 32 -t wav "$OUT/seed-pcm32.wav" "${CUT[@]}"
"${SOX[@]}" -e float -b 32 -t wav "$OUT/seed-float32.wav" "${CUT[@]}"
"${SOX[@]}" -e signed -b 16 -c 2 -t wav "$OUT/seed-stereo16.wav" "${CUT[@]}"
"${SOX[@]}" -e gsm-full-rate -t wav "$OUT/seed-wav49.wav" "${CUT[@]}"
"${SOX[@]}" -t ul "$OUT/seed-raw.ulaw" "${CUT[@]}"
"${SOX[@]}" -t al "$OUT/seed-raw.alaw" "${CUT[@]}"
"${SOX[@]}" -t gsm "$OUT/seed-raw.gsm" "${CUT[@]}"
"${SOX[@]}" -t sln "$OUT/seed-raw.sln" "${CUT[@]}"
"${FF[@]}" -c:a libmp3lame -b:a 16k "$OUT/seed-mp3.mp3"
"${SOX[@]}" -t flac "$OUT/seed-flac.flac" "${CUT[@]}"
"${FF[@]}" -c:a libvorbis -ar 8000 -q:a 0 "$OUT/seed-vorbis.ogg"
"${FF[@]}" -c:a libopus -b:a 8k "$OUT/seed-opus.opus"
"${FF[@]}" -c:a libopus -b:a 8k -f webm "$OUT/seed-webm.webm"
# µ-law with a 16-byte fmt chunk (what many tools write) and a truncated one.
python3 - "$OUT" <<'PY'
import struct, sys
out = sys.argv[1]
data = open(f"{out}/seed-raw.ulaw", "rb").read()
fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
open(f"{out}/seed-ulaw-fmt16.wav", "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)
whole = open(f"{out}/seed-ulaw.wav", "rb").read()
open(f"{out}/seed-truncated.wav", "wb").write(whole[: len(whole) // 2])
PY
head -c 256 fixtures/garbage.bin > "$OUT/seed-garbage.bin"
: > "$OUT/seed-empty"
# A 6 KB Vorbis setup that would unpack to gigabytes of codebooks (refused before any decoder).
python3 fixtures/vorbis-codebook-bomb.py "$OUT/seed-vorbis-codebook-bomb.ogg"
du -cb "$OUT"/seed-* | tail -1
