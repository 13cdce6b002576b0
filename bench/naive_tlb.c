/* A naive TLB simulator: the baseline of bench/bench_trace.py.
 *
 *   naive_tlb TRACE.npy HEADER_BYTES RECORD_BYTES PAGE_SHIFT
 *
 * Reads the compact trace (records of an int64 address then a bool, RECORD_BYTES each,
 * after a HEADER_BYTES .npy header) and runs every access through a 48-entry fully
 * associative L1 and a 1280-entry 5-way L2 (set = page % 256), true LRU by timestamps,
 * a linear scan of the ways per lookup; the L2 is looked up on an L1 miss and a miss
 * fills both. Prints "accesses l1_misses l2_misses". No page table, no data caches.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L1_WAYS 48
#define L2_SETS 256
#define L2_WAYS 5

static int64_t l1_tag[L1_WAYS], l1_time[L1_WAYS];
static int64_t l2_tag[L2_SETS][L2_WAYS], l2_time[L2_SETS][L2_WAYS];

/* 1 on a hit; on a miss the least recently used way takes the tag. */
static int lookup(int64_t *tag, int64_t *when, int ways, int64_t page, int64_t now)
{
    int victim = 0;
    for (int w = 0; w < ways; w++) {
        if (tag[w] == page) {
            when[w] = now;
            return 1;
        }
        if (when[w] < when[victim])
            victim = w;
    }
    tag[victim] = page;
    when[victim] = now;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s TRACE.npy HEADER_BYTES RECORD_BYTES PAGE_SHIFT\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    long header = atol(argv[2]), rec = atol(argv[3]);
    int shift = atoi(argv[4]);
    fseek(f, header, SEEK_SET);
    memset(l1_tag, 0xff, sizeof l1_tag);
    memset(l2_tag, 0xff, sizeof l2_tag);
    memset(l1_time, 0xff, sizeof l1_time); /* -1: older than any access */
    memset(l2_time, 0xff, sizeof l2_time);
    enum { BUF = 1 << 16 };
    unsigned char *buf = malloc((size_t)BUF * rec);
    int64_t n = 0, m1 = 0, m2 = 0;
    size_t got;
    while ((got = fread(buf, rec, BUF, f)) > 0) {
        for (size_t i = 0; i < got; i++) {
            int64_t addr;
            memcpy(&addr, buf + i * rec, sizeof addr);
            int64_t page = addr >> shift;
            n++;
            if (lookup(l1_tag, l1_time, L1_WAYS, page, n))
                continue;
            m1++;
            int s = (int)(page % L2_SETS);
            if (!lookup(l2_tag[s], l2_time[s], L2_WAYS, page, n))
                m2++;
        }
    }
    printf("%lld %lld %lld\n", (long long)n, (long long)m1, (long long)m2);
    free(buf);
    fclose(f);
    return 0;
}
