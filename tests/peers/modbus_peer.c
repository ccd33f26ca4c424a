/* Independent Modbus peer for bench/collect.py: libmodbus polls the same devices the same way (one connection per
 * port, COUNT registers from ADDRESS per poll, ROUNDS rounds over all ports) and prints CPU microseconds per poll.
 * -u UNIT sets the unit id (libmodbus sends 0xFF on TCP by default, which servers that check the unit refuse). */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    int unit = -1;
    if (argc > 2 && strcmp(argv[1], "-u") == 0) {
        unit = atoi(argv[2]);
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: %s [-u UNIT] ROUNDS ADDRESS COUNT PORT...\n", argv[0]);
        return 2;
    }
    int rounds = atoi(argv[1]), address = atoi(argv[2]), count = atoi(argv[3]), n = argc - 4;
    modbus_t **ctx = calloc(n, sizeof(modbus_t *));
    uint16_t regs[125];
    for (int i = 0; i < n; i++) {
        ctx[i] = modbus_new_tcp("127.0.0.1", atoi(argv[4 + i]));
        if (ctx[i] == NULL || (unit >= 0 && modbus_set_slave(ctx[i], unit) < 0) || modbus_connect(ctx[i]) < 0) {
            fprintf(stderr, "connect %s failed\n", argv[4 + i]);
            return 1;
        }
    }
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++)
            if (modbus_read_registers(ctx[i], address, count, regs) != count) {
                fprintf(stderr, "read failed on %s: %s\n", argv[4 + i], modbus_strerror(errno));
                return 1;
            }
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    double us = ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 1e3;
    printf("%.3f\n", us / ((double)rounds * n));
    for (int i = 0; i < n; i++) {
        modbus_close(ctx[i]);
        modbus_free(ctx[i]);
    }
    return 0;
}
