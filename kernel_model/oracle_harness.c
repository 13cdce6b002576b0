/*
 * pagesweep oracle harness: replay a script of memory operations on the running kernel
 * and print what the kernel did (kernel_model/oracle.py compiles and drives it).
 *
 * Usage: oracle_harness SCRIPT
 * SCRIPT holds one command per line (ids are small integers naming regions):
 *   map ID anon|shared|file|sharedfile LENGTH [PATH]
 *       mmap a PMD-aligned (2 MiB) region of LENGTH bytes between PROT_NONE guards:
 *       private anonymous, shared anonymous (shmem), or PATH mapped private/shared.
 *   madvise ID OFFSET LENGTH hugepage|nohugepage|dontneed
 *   mprotect ID OFFSET LENGTH r|rw|none
 *   access ID FILE FIRST COUNT
 *       replay COUNT entries of FILE (little-endian int64, (offset << 1) | is_write)
 *       starting at entry FIRST: a one-byte load or store at region + offset, in order.
 *       Prints "access ID minflt N majflt M": getrusage(RUSAGE_SELF) deltas taken
 *       right before and right after the loop (the entries are read in beforehand).
 *   fork
 *       fork(); the child runs the rest of the script, the parent waits for it and
 *       exits with its status.
 *   report ID
 *       "report ID rss R anon A anonhuge H shmempmd S filepmd F" (bytes) summed over
 *       the /proc/self/smaps entries inside the region (fs/proc/task_mmu.c).
 *   folios ID
 *       "folios ID pages P zero Z hugezero HZ SIZE:COUNT ..." from /proc/self/pagemap
 *       and /proc/kpageflags (needs CAP_SYS_ADMIN for PFNs): mapped pages, pages on the
 *       zero page, pages on the huge zero page, and the distinct folios mapped in the
 *       region by size in bytes (compound head/tail flags). "folios ID unavailable"
 *       when the PFNs cannot be read.
 *   layout ID
 *       "layout ID FIRST:NR ..." one entry per distinct folio mapped in the region: the
 *       region page index of the folio's first page and its size in pages, ascending
 *       ("layout ID unavailable" without readable PFNs).
 * Errors: one line on stderr naming the script line, exit status 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define PMD_SIZE (2UL << 20)
#define MAX_REGIONS 16
/* include/uapi/linux/kernel-page-flags.h */
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_THP 22
#define KPF_ZERO_PAGE 24

struct region {
	char *addr;
	size_t len;
};

static struct region regions[MAX_REGIONS];
static const char *script_name;
static int lineno;

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s:%d: ", script_name, lineno);
	fprintf(stderr, fmt, arg);
	if (errno)
		fprintf(stderr, ": %s", strerror(errno));
	fputc('\n', stderr);
	exit(2);
}

static struct region *region_of(int id)
{
	if (id < 0 || id >= MAX_REGIONS || !regions[id].addr) {
		errno = 0;
		die("no region %s", "with that id");
	}
	return &regions[id];
}

static void do_map(int id, const char *kind, size_t len, const char *path)
{
	int flags = MAP_FIXED, fd = -1;
	char *resv, *addr;

	if (id < 0 || id >= MAX_REGIONS || len == 0) {
		errno = 0;
		die("bad map command%s", "");
	}
	/* the region, PMD-aligned, with PROT_NONE guards on both sides (no VMA merging) */
	resv = mmap(NULL, len + 2 * PMD_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (resv == MAP_FAILED)
		die("mmap reserve%s", "");
	addr = (char *)(((uintptr_t)resv + PMD_SIZE) & ~(PMD_SIZE - 1));
	if (!strcmp(kind, "anon")) {
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
	} else if (!strcmp(kind, "shared")) {
		flags |= MAP_SHARED | MAP_ANONYMOUS;
	} else if (!strcmp(kind, "file") || !strcmp(kind, "sharedfile")) {
		flags |= kind[0] == 's' ? MAP_SHARED : MAP_PRIVATE;
		fd = open(path, O_RDWR);
		if (fd < 0)
			die("open %s", path);
	} else {
		errno = 0;
		die("unknown map kind %s", kind);
	}
	if (mmap(addr, len, PROT_READ | PROT_WRITE, flags, fd, 0) == MAP_FAILED)
		die("mmap %s", kind);
	if (fd >= 0)
		close(fd);
	regions[id].addr = addr;
	regions[id].len = len;
	printf("map %d %p\n", id, (void *)addr);
}

static void check_range(struct region *r, size_t off, size_t len)
{
	if (off > r->len || len > r->len - off) {
		errno = 0;
		die("range outside the region%s", "");
	}
}

static void do_madvise(struct region *r, size_t off, size_t len, const char *adv)
{
	int a;

	check_range(r, off, len);
	if (!strcmp(adv, "hugepage"))
		a = MADV_HUGEPAGE;
	else if (!strcmp(adv, "nohugepage"))
		a = MADV_NOHUGEPAGE;
	else if (!strcmp(adv, "dontneed"))
		a = MADV_DONTNEED;
	else {
		errno = 0;
		die("unknown madvise advice %s", adv);
	}
	if (madvise(r->addr + off, len, a))
		die("madvise %s", adv);
}

static void do_mprotect(struct region *r, size_t off, size_t len, const char *p)
{
	int prot;

	check_range(r, off, len);
	if (!strcmp(p, "r"))
		prot = PROT_READ;
	else if (!strcmp(p, "rw"))
		prot = PROT_READ | PROT_WRITE;
	else if (!strcmp(p, "none"))
		prot = PROT_NONE;
	else {
		errno = 0;
		die("unknown protection %s", p);
	}
	if (mprotect(r->addr + off, len, prot))
		die("mprotect %s", p);
}

static void do_access(int id, struct region *r, const char *file, long first, long count)
{
	struct rusage before, after;
	int64_t *ent;
	size_t want = (size_t)count * sizeof(*ent), got = 0;
	int fd = open(file, O_RDONLY);

	if (fd < 0)
		die("open %s", file);
	ent = malloc(want ? want : 1);
	if (!ent)
		die("malloc for %s", file);
	while (got < want) {
		ssize_t n = pread(fd, (char *)ent + got, want - got, (off_t)first * sizeof(*ent) + got);

		if (n <= 0) {
			if (n == 0)
				errno = 0;
			die("short read of %s", file);
		}
		got += n;
	}
	close(fd);
	for (long i = 0; i < count; i++) {
		if (ent[i] < 0 || (uint64_t)(ent[i] >> 1) >= r->len) {
			errno = 0;
			die("access entry outside the region in %s", file);
		}
	}
	getrusage(RUSAGE_SELF, &before);
	for (long i = 0; i < count; i++) {
		volatile char *p = r->addr + (ent[i] >> 1);

		if (ent[i] & 1)
			*p = 1;
		else
			(void)*p;
	}
	getrusage(RUSAGE_SELF, &after);
	free(ent);
	printf("access %d minflt %ld majflt %ld\n", id, after.ru_minflt - before.ru_minflt,
	       after.ru_majflt - before.ru_majflt);
}

static void do_report(int id, struct region *r)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int inside = 0;
	unsigned long long rss = 0, anon = 0, huge = 0, shpmd = 0, fpmd = 0, v;
	uintptr_t lo = (uintptr_t)r->addr, hi = lo + r->len;

	if (!f)
		die("open %s", "/proc/self/smaps");
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;
		char key[64];

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			inside = s >= lo && e <= hi;
			continue;
		}
		if (!inside || sscanf(line, "%63[^:]: %llu kB", key, &v) != 2)
			continue;
		v <<= 10;
		if (!strcmp(key, "Rss"))
			rss += v;
		else if (!strcmp(key, "Anonymous"))
			anon += v;
		else if (!strcmp(key, "AnonHugePages"))
			huge += v;
		else if (!strcmp(key, "ShmemPmdMapped"))
			shpmd += v;
		else if (!strcmp(key, "FilePmdMapped"))
			fpmd += v;
	}
	fclose(f);
	printf("report %d rss %llu anon %llu anonhuge %llu shmempmd %llu filepmd %llu\n", id, rss, anon, huge,
	       shpmd, fpmd);
}

static int read_u64(int fd, uint64_t idx, uint64_t *out)
{
	return pread(fd, out, 8, (off_t)(idx * 8)) == 8 ? 0 : -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void do_folios(int id, struct region *r, int layout)
{
	long ps = sysconf(_SC_PAGESIZE);
	size_t n = r->len / ps, nheads = 0, pages = 0, zero = 0, hzero = 0;
	int pm = open("/proc/self/pagemap", O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
	uint64_t *heads = malloc(n * 2 * sizeof(uint64_t)); /* (head pfn, nr pages) pairs */

	if (pm < 0 || kf < 0 || !heads)
		goto unavailable;
	for (size_t i = 0; i < n; i++) {
		uint64_t e, fl, pfn, head, nr = 1;

		if (read_u64(pm, ((uintptr_t)r->addr + i * ps) / ps, &e))
			goto unavailable;
		if (!(e >> 63 & 1))
			continue;
		pfn = e & ((1ULL << 55) - 1);
		if (!pfn)
			goto unavailable; /* PFNs hidden: no CAP_SYS_ADMIN */
		if (read_u64(kf, pfn, &fl))
			goto unavailable;
		pages++;
		if (fl >> KPF_ZERO_PAGE & 1) {
			if (fl >> KPF_THP & 1)
				hzero++;
			else
				zero++;
			continue;
		}
		head = pfn;
		while (fl >> KPF_COMPOUND_TAIL & 1) {
			if (read_u64(kf, --head, &fl))
				goto unavailable;
		}
		if (fl >> KPF_COMPOUND_HEAD & 1) {
			for (;;) {
				if (read_u64(kf, head + nr, &fl) || !(fl >> KPF_COMPOUND_TAIL & 1))
					break;
				nr++;
			}
		}
		/* layout: keyed by the region index of the folio's first page instead */
		heads[2 * nheads] = layout ? (uint64_t)((int64_t)i - (int64_t)(pfn - head)) : head;
		heads[2 * nheads + 1] = nr;
		nheads++;
	}
	qsort(heads, nheads, 2 * sizeof(uint64_t), cmp_u64);
	if (layout) {
		printf("layout %d", id);
		for (size_t i = 0; i < nheads; i++)
			if (!i || heads[2 * i] != heads[2 * i - 2])
				printf(" %lld:%llu", (long long)heads[2 * i], (unsigned long long)heads[2 * i + 1]);
		printf("\n");
		goto out;
	}
	printf("folios %d pages %zu zero %zu hugezero %zu", id, pages, zero, hzero);
	{
		/* distinct folios, counted by size */
		uint64_t sizes[32] = {0}, counts[32] = {0};
		int ns = 0;

		for (size_t i = 0; i < nheads; i++) {
			uint64_t sz = heads[2 * i + 1] * ps;
			int k;

			if (i && heads[2 * i] == heads[2 * i - 2])
				continue;
			for (k = 0; k < ns && sizes[k] != sz; k++)
				;
			if (k == ns && ns < 32)
				sizes[ns++] = sz;
			if (k < 32)
				counts[k]++;
		}
		for (int k = 0; k < ns; k++)
			printf(" %llu:%llu", (unsigned long long)sizes[k], (unsigned long long)counts[k]);
	}
	printf("\n");
	goto out;
unavailable:
	printf("%s %d unavailable\n", layout ? "layout" : "folios", id);
out:
	free(heads);
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
}

int main(int argc, char **argv)
{
	char line[4096], a[256], b[4096], c[256];
	unsigned long long x, y;
	FILE *f;
	int id;

	if (argc != 2) {
		fprintf(stderr, "usage: %s SCRIPT\n", argv[0]);
		return 2;
	}
	script_name = argv[1];
	f = fopen(script_name, "r");
	if (!f) {
		perror(script_name);
		return 2;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		errno = 0;
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (sscanf(line, "map %d %255s %llu %4095s", &id, a, &x, b) >= 3) {
			do_map(id, a, x, b);
		} else if (sscanf(line, "madvise %d %llu %llu %255s", &id, &x, &y, a) == 4) {
			do_madvise(region_of(id), x, y, a);
		} else if (sscanf(line, "mprotect %d %llu %llu %255s", &id, &x, &y, a) == 4) {
			do_mprotect(region_of(id), x, y, a);
		} else if (sscanf(line, "access %d %4095s %llu %llu", &id, b, &x, &y) == 4) {
			do_access(id, region_of(id), b, (long)x, (long)y);
		} else if (sscanf(line, "report %d", &id) == 1) {
			do_report(id, region_of(id));
		} else if (sscanf(line, "folios %d", &id) == 1) {
			do_folios(id, region_of(id), 0);
		} else if (sscanf(line, "layout %d", &id) == 1) {
			do_folios(id, region_of(id), 1);
		} else if (!strncmp(line, "fork", 4)) {
			pid_t pid;
			int status;

			fflush(stdout);
			pid = fork();
			if (pid < 0)
				die("fork%s", "");
			if (pid > 0) {
				if (waitpid(pid, &status, 0) < 0)
					die("waitpid%s", "");
				return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
			}
			printf("fork child\n");
		} else {
			errno = 0;
			sscanf(line, "%255s", c);
			die("unknown or malformed command %s", c);
		}
		fflush(stdout);
	}
	fclose(f);
	return 0;
}
