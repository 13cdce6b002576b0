/* Replay an access sequence on the running kernel: the oracle of bench_faults.py.
 *
 *   fault_replay ACCESSES_FILE WORKING_SET_BYTES NOHUGEPAGE(0|1)
 *
 * ACCESSES_FILE holds one little-endian uint64 per access: the byte offset in the region
 * (8-byte aligned), bit 0 set for a store. The region is one private anonymous mapping of
 * WORKING_SET_BYTES (madvise(MADV_NOHUGEPAGE) when asked: base pages only, no THP of any
 * order). The whole file is read, and its buffer touched, before the replay, so the
 * minor faults counted (getrusage ru_minflt, before and after) are the region's. Prints
 * one line: "seconds=<replay wall time> minflt=<faults> anon_kb=<Anonymous: growth in
 * /proc/self/smaps_rollup>".
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

static long anon_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Anonymous: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s ACCESSES_FILE WORKING_SET_BYTES NOHUGEPAGE(0|1)\n", argv[0]);
		return 2;
	}
	size_t ws = strtoull(argv[2], NULL, 0);
	FILE *f = fopen(argv[1], "rb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	size_t n = ftell(f) / 8;
	fseek(f, 0, SEEK_SET);
	uint64_t *acc = malloc(n * 8 + 1);
	if (!acc || fread(acc, 8, n, f) != n) {
		fprintf(stderr, "%s: cannot read %zu accesses\n", argv[1], n);
		return 1;
	}
	fclose(f);
	char *region = mmap(NULL, ws, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if (atoi(argv[3]) && madvise(region, ws, MADV_NOHUGEPAGE)) {
		perror("madvise(MADV_NOHUGEPAGE)");
		return 1;
	}
	volatile uint64_t sink = 0;
	for (size_t i = 0; i < n; i++)
		sink += acc[i]; /* every page of the buffer resident before counting */
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0); /* the vDSO data pages faulted in before counting */
	long anon0 = anon_kb(), flt0 = minflt();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < n; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(region + (acc[i] & ~(uint64_t)7));
		if (acc[i] & 1)
			*p = i;
		else
			sink += *p;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long flt1 = minflt(), anon1 = anon_kb();
	printf("seconds=%.6f minflt=%ld anon_kb=%ld\n",
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, flt1 - flt0, anon1 - anon0);
	return 0;
}
