/* Opus settings sweep for bench/pesq.sh (PESQ_SWEEP=1): encodes 16-bit mono PCM with Debian's
 * libopus (the same 1.3.1 code voxmail links through unsafe-libopus) at one setting, times the
 * encode loop (process CPU time, no I/O), decodes the packets back at the input rate and writes
 * them with the encoder's lookahead dropped, for PESQ against the input.
 *
 *   opus_settings IN.s16 OUT.s16 RATE APPLICATION COMPLEXITY FRAME_MS BITRATE
 *
 * APPLICATION is voip or audio; FRAME_MS 20, 40 or 60. Prints "BYTES CPU_MS" (packet bytes, no
 * container) on stdout.
 */
#include <opus/opus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s IN.s16 OUT.s16 RATE voip|audio COMPLEXITY FRAME_MS BITRATE\n", argv[0]);
        return 2;
    }
    int rate = atoi(argv[3]), complexity = atoi(argv[5]), frame = rate / 1000 * atoi(argv[6]);
    int app = strcmp(argv[4], "audio") == 0 ? OPUS_APPLICATION_AUDIO : OPUS_APPLICATION_VOIP;
    FILE *in = fopen(argv[1], "rb");
    if (!in) { perror(argv[1]); return 1; }
    fseek(in, 0, SEEK_END);
    long n = ftell(in) / 2;
    fseek(in, 0, SEEK_SET);
    int err, lookahead;
    OpusEncoder *enc = opus_encoder_create(rate, 1, app, &err);
    if (err != OPUS_OK) { fprintf(stderr, "encoder: %s\n", opus_strerror(err)); return 1; }
    opus_encoder_ctl(enc, OPUS_SET_BITRATE(atoi(argv[7])));
    opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(complexity));
    opus_encoder_ctl(enc, OPUS_GET_LOOKAHEAD(&lookahead));
    /* The input, then zeros to flush the lookahead, in whole frames (as voxmail pads). */
    long frames = (n + lookahead + frame - 1) / frame;
    short *pcm = calloc((size_t)(frames * frame), sizeof(short));
    if (fread(pcm, sizeof(short), (size_t)n, in) != (size_t)n) { perror("read"); return 1; }
    fclose(in);
    unsigned char *packets = malloc((size_t)frames * 4000);
    int *len = malloc((size_t)frames * sizeof(int));
    long bytes = 0;
    double t0 = cpu_ms();
    for (long i = 0; i < frames; i++) {
        len[i] = opus_encode(enc, pcm + i * frame, frame, packets + i * 4000, 4000);
        if (len[i] < 0) { fprintf(stderr, "encode: %s\n", opus_strerror(len[i])); return 1; }
        bytes += len[i];
    }
    double t1 = cpu_ms();
    OpusDecoder *dec = opus_decoder_create(rate, 1, &err);
    short *out = calloc((size_t)(frames * frame), sizeof(short));
    long got = 0;
    for (long i = 0; i < frames; i++)
        got += opus_decode(dec, packets + i * 4000, len[i], out + got, frame, 0);
    FILE *o = fopen(argv[2], "wb");
    if (!o) { perror(argv[2]); return 1; }
    fwrite(out + lookahead, sizeof(short), (size_t)n, o);
    fclose(o);
    printf("%ld %.1f\n", bytes, t1 - t0);
    return 0;
}
