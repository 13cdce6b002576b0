/* A hash join: build an open-addressing table of 96 K keys (8 MiB of 32-byte
 * buckets, linear probing) from one relation, then probe it with 192 K keys of
 * another, half of which match, as a database's join operator does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BUCKETS (256 * 1024)       /* 32 B each: 8 MiB */
#define BUILD (96 * 1024)
#define PROBE (192 * 1024)

struct bucket { uint64_t key, payload, hits, pad; };

static uint64_t x = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; }
static uint64_t hash(uint64_t k) { return (k * 0xff51afd7ed558ccdull) >> 46; }  /* 18 bits */

int main(void)
{
	struct bucket *table = calloc(BUCKETS, sizeof(struct bucket));
	uint64_t *keys = malloc(sizeof(uint64_t) * BUILD), matched = 0;

	for (uint32_t i = 0; i < BUILD; i++) {
		uint64_t k = (next_rand() | 1), h = hash(k);
		keys[i] = k;
		while (table[h].key)
			h = (h + 1) & (BUCKETS - 1);
		table[h].key = k;
		table[h].payload = i;
	}
	for (uint32_t i = 0; i < PROBE; i++) {
		uint64_t k = (i & 1) ? keys[next_rand() % BUILD] : (next_rand() | 1);
		for (uint64_t h = hash(k); table[h].key; h = (h + 1) & (BUCKETS - 1))
			if (table[h].key == k) {
				table[h].hits++;
				matched++;
				break;
			}
	}
	printf("%llu\n", (unsigned long long)matched);
	return 0;
}
