/*
 * The floor of bench/transcode.sh in C: Debian's libopus (1.3.1) encoding 8 kHz mono 16-bit PCM
 * with the settings of voxmail's Ogg Opus renditions (src/audio/ogg_opus.rs and
 * crates/voxmail-codecs): OPUS_APPLICATION_VOIP, 16 kbit/s (or argv[3]), 40 ms frames (320
 * samples), complexity 8 (or argv[4]; voxmail's audio.opus_complexity default), input padded by
 * the encoder's lookahead, zero-filled last frame. No container: packets are only counted and
 * hashed.
 *
 *   gcc -O2 -o opus_floor bench/opus_floor.c $(pkg-config --cflags --libs opus)
 *   opus_floor PCM.s16le [REPEAT] [BITRATE] [COMPLEXITY]
 *
 * Prints one line: packets, bytes, an FNV-1a hash of the packets (equal to bench/opus_floor.rs's
 * when both libraries give the same bits), and the median and minimum time of one whole encode
 * (encoder creation included) over REPEAT runs in the same process. COMPLEXITY (0-10) defaults
 * to 8, as voxmail's renditions; -1 leaves the library default (10).
 */
#include <opus.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FRAME 320

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PCM.s16le [REPEAT] [BITRATE] [COMPLEXITY]\n", argv[0]);
        return 2;
    }
    int repeat = argc > 2 ? atoi(argv[2]) : 1;
    int bitrate = argc > 3 ? atoi(argv[3]) : 16000;
    int complexity = argc > 4 ? atoi(argv[4]) : 8;
    if (repeat < 1) repeat = 1;
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 2; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t n = (size_t)size / 2;
    int16_t *pcm = malloc(n * sizeof *pcm + 1);
    if (!pcm || fread(pcm, 2, n, f) != n) { fprintf(stderr, "cannot read %s\n", argv[1]); return 2; }
    fclose(f);

    double *times = malloc(repeat * sizeof *times);
    unsigned char packet[4000];
    int16_t frame[FRAME];
    size_t packets = 0, bytes = 0;
    uint64_t hash = 0;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_us();
        int err;
        OpusEncoder *enc = opus_encoder_create(8000, 1, OPUS_APPLICATION_VOIP, &err);
        if (err != OPUS_OK || opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate)) != OPUS_OK ||
            (complexity >= 0 && opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(complexity)) != OPUS_OK)) {
            fprintf(stderr, "libopus: %s\n", opus_strerror(err));
            return 1;
        }
        opus_int32 lookahead;
        opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&lookahead));
        size_t frames = (n + (size_t)lookahead + FRAME - 1) / FRAME;
        if (frames == 0) frames = 1;
        packets = bytes = 0;
        hash = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < frames; i++) {
            size_t start = i * FRAME < n ? i * FRAME : n;
            size_t end = (i + 1) * FRAME < n ? (i + 1) * FRAME : n;
            memset(frame, 0, sizeof frame);
            memcpy(frame, pcm + start, (end - start) * sizeof *pcm);
            int len = opus_encode(enc, frame, FRAME, packet, sizeof packet);
            if (len < 0) { fprintf(stderr, "opus_encode: %s\n", opus_strerror(len)); return 1; }
            for (int k = 0; k < len; k++) hash = (hash ^ packet[k]) * 0x100000001b3ULL;
            packets++;
            bytes += (size_t)len;
        }
        opus_encoder_destroy(enc);
        times[r] = now_us() - t0;
    }
    qsort(times, repeat, sizeof *times, cmp_double);
    printf("packets=%zu bytes=%zu fnv=%016llx median_us=%.0f min_us=%.0f runs=%d\n", packets, bytes,
           (unsigned long long)hash, times[repeat / 2], times[0], repeat);
    free(times);
    free(pcm);
    return 0;
}
