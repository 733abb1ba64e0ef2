"""PESQ (ITU-T P.862, PyPI `pesq`) of decoded Opus files against their source.

    python pesq_score.py nb|wb REFERENCE.wav NAME=DEGRADED.wav [NAME=DEGRADED.wav ...]

nb: narrowband P.862, every file 16-bit PCM WAV at 8 kHz mono; wb: wideband P.862.2, at 16 kHz
(bench/pesq.sh decodes the Opus files with ffmpeg first). Both signals are cut to the shorter
length. Prints one `NAME MOS` line per degraded file.
"""

import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile


def load(path, rate):
    got, data = wavfile.read(path)
    if got != rate or data.dtype != np.int16 or data.ndim != 1:
        sys.exit(f"{path}: need 16-bit mono {rate} Hz PCM, got {data.dtype} {data.shape} at {got} Hz")
    return data.astype(np.float32) / 32768.0


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("nb", "wb"):
        sys.exit(__doc__)
    mode = sys.argv[1]
    rate = 8000 if mode == "nb" else 16000
    ref = load(sys.argv[2], rate)
    for arg in sys.argv[3:]:
        name, _, path = arg.partition("=")
        deg = load(path, rate)
        n = min(len(ref), len(deg))
        print(f"{name} {pesq(rate, ref[:n], deg[:n], mode):.3f}")


if __name__ == "__main__":
    main()
