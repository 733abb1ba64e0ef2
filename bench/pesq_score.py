"""Narrowband PESQ (ITU-T P.862, PyPI `pesq`) of decoded Opus files against their source.

    python pesq_score.py REFERENCE.wav NAME=DEGRADED.wav [NAME=DEGRADED.wav ...]

Every file must be 16-bit PCM WAV, 8 kHz mono (bench/pesq.sh decodes the Opus files with ffmpeg
first). Both signals are cut to the shorter length. Prints one `NAME MOS` line per degraded file.
"""

import sys

import numpy as np
from pesq import pesq
from scipy.io import wavfile


def load(path):
    rate, data = wavfile.read(path)
    if rate != 8000 or data.dtype != np.int16 or data.ndim != 1:
        sys.exit(f"{path}: need 16-bit mono 8 kHz PCM, got {data.dtype} {data.shape} at {rate} Hz")
    return data.astype(np.float32) / 32768.0


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    ref = load(sys.argv[1])
    for arg in sys.argv[2:]:
        name, _, path = arg.partition("=")
        deg = load(path)
        n = min(len(ref), len(deg))
        print(f"{name} {pesq(8000, ref[:n], deg[:n], 'nb'):.3f}")


if __name__ == "__main__":
    main()
