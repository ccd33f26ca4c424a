/* Independent Modbus peer for bench/collect.py: libmodbus polls the same devices the same way (one connection per
 * port, COUNT registers from ADDRESS per poll, ROUNDS rounds over all ports) and prints CPU microseconds per poll.
 * -u UNIT sets the unit id (libmodbus sends 0xFF on TCP by default, which servers that check the unit refuse).
 * -d SPEC also decodes every poll into doubles, as our collector does: SPEC lists runs of COUNT x TYPE[*SCALE], e.g.
 *   20f,10F,20h*0.1,6I,1Q,4H  (f float32 ABCD, F float32 CDAB, h int16, H uint16, I uint32, Q uint64).
 * -i INTERVAL_US paces the polls like the collector's engine: poll k of a round starts at k * INTERVAL / ports, then
 *   the process sleeps (CPU is only counted while it runs, so the figure includes waking up cold for each poll). */
#include <errno.h>
#include <modbus.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int count;
    char type;
    double scale;
} run_t;

static int parse_spec(const char *spec, run_t *runs, int max) {
    int n = 0;
    while (*spec && n < max) {
        char *end;
        runs[n].count = (int)strtol(spec, &end, 10);
        runs[n].type = *end++;
        runs[n].scale = 1.0;
        if (*end == '*') runs[n].scale = strtod(end + 1, &end);
        n++;
        spec = *end == ',' ? end + 1 : end;
    }
    return n;
}

static uint32_t u32(const uint16_t *r, int swap) { return swap ? (uint32_t)r[1] << 16 | r[0] : (uint32_t)r[0] << 16 | r[1]; }

/* Decode one poll's registers into doubles (libmodbus has already converted each register to host order). */
static int decode(const uint16_t *regs, const run_t *runs, int nruns, double *out) {
    int p = 0, at = 0;
    for (int k = 0; k < nruns; k++)
        for (int i = 0; i < runs[k].count; i++) {
            double v;
            uint32_t w;
            float f;
            switch (runs[k].type) {
            case 'f': case 'F':
                w = u32(regs + at, runs[k].type == 'F');
                memcpy(&f, &w, 4);
                v = f;
                at += 2;
                break;
            case 'h': v = (int16_t)regs[at++]; break;
            case 'H': v = regs[at++]; break;
            case 'I': v = u32(regs + at, 0); at += 2; break;
            case 'Q': v = (double)((uint64_t)u32(regs + at, 0) << 32 | u32(regs + at + 2, 0)); at += 4; break;
            default: return -1;
            }
            out[p++] = v * runs[k].scale;
        }
    return p;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int unit = -1, nruns = 0;
    double interval = 0;
    run_t runs[64];
    while (argc > 2 && argv[1][0] == '-') {
        if (strcmp(argv[1], "-u") == 0) unit = atoi(argv[2]);
        else if (strcmp(argv[1], "-d") == 0) nruns = parse_spec(argv[2], runs, 64);
        else if (strcmp(argv[1], "-i") == 0) interval = atof(argv[2]) / 1e6;
        else break;
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: %s [-u UNIT] [-d SPEC] [-i INTERVAL_US] ROUNDS ADDRESS COUNT PORT...\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]), address = atoi(argv[2]), count = atoi(argv[3]), n = argc - 4;
    modbus_t **ctx = calloc(n, sizeof(modbus_t *));
    uint16_t regs[125];
    double values[125], sink = 0;
    for (int i = 0; i < n; i++) {
        ctx[i] = modbus_new_tcp("127.0.0.1", atoi(argv[4 + i]));
        if (ctx[i] == NULL || (unit >= 0 && modbus_set_slave(ctx[i], unit) < 0) || modbus_connect(ctx[i]) < 0) {
            fprintf(stderr, "connect %s failed\n", argv[4 + i]);
            return 1;
        }
    }
    struct timespec a, b;
    double start = now_s();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            if (interval > 0) {
                double wait = start + (r + (double)i / n) * interval - now_s();
                if (wait > 0) {
                    struct timespec w = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                    nanosleep(&w, NULL);
                }
            }
            if (modbus_read_registers(ctx[i], address, count, regs) != count) {
                fprintf(stderr, "read failed on %s: %s\n", argv[4 + i], modbus_strerror(errno));
                return 1;
            }
            if (nruns) { /* every decoded value feeds the checksum, so the compiler keeps all the work */
                int got = decode(regs, runs, nruns, values);
                for (int k = 0; k < got; k++) sink += values[k];
            }
        }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3;
    printf("%.3f\n", us / ((double)rounds * n));
    fprintf(stderr, "checksum %g\n", sink);
    for (int i = 0; i < n; i++) {
        modbus_close(ctx[i]);
        modbus_free(ctx[i]);
    }
    return 0;
}
