/*
 * Plain-C set-associative LRU TLBs: the speed limit kmm's Numba kernel is measured against.
 *
 *   lru TRACE_FILE N_ACCESSES SETS WAYS PAGE_SHIFT POLICY REPEATS
 *
 * TRACE_FILE holds N_ACCESSES little-endian uint64 virtual addresses. POLICY is "stamp"
 * (per-way timestamps; a hit updates the stamp, a miss evicts the smallest) or "mtf"
 * (each set kept in recency order; a hit moves its way to the front). The best of REPEATS
 * runs is reported as "misses=<n> ns=<best wall ns of the simulation loop>".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t run_stamp(const uint64_t *a, uint64_t n, uint64_t sets, uint64_t ways,
			  unsigned shift)
{
	uint64_t *tag = malloc(sets * ways * sizeof(*tag));
	uint64_t *stamp = calloc(sets * ways, sizeof(*stamp));
	uint64_t misses = 0, clock = 0, mask = sets - 1;

	for (uint64_t i = 0; i < sets * ways; i++)
		tag[i] = UINT64_MAX;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t vpn = a[i] >> shift;
		uint64_t base = (vpn & mask) * ways;
		uint64_t victim = base, oldest = UINT64_MAX;
		int hit = 0;

		clock++;
		for (uint64_t w = base; w < base + ways; w++) {
			if (tag[w] == vpn) {
				stamp[w] = clock;
				hit = 1;
				break;
			}
			if (stamp[w] < oldest) {
				oldest = stamp[w];
				victim = w;
			}
		}
		if (!hit) {
			misses++;
			tag[victim] = vpn;
			stamp[victim] = clock;
		}
	}
	free(tag);
	free(stamp);
	return misses;
}

static uint64_t run_mtf(const uint64_t *a, uint64_t n, uint64_t sets, uint64_t ways,
			unsigned shift)
{
	uint64_t *tag = malloc(sets * ways * sizeof(*tag));
	uint64_t misses = 0, mask = sets - 1;

	for (uint64_t i = 0; i < sets * ways; i++)
		tag[i] = UINT64_MAX;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t vpn = a[i] >> shift;
		uint64_t *s = tag + (vpn & mask) * ways;
		uint64_t w = 0;

		while (w < ways && s[w] != vpn)
			w++;
		if (w == ways) {
			misses++;
			w = ways - 1;	/* evict the least recent, at the back */
		}
		memmove(s + 1, s, w * sizeof(*s));
		s[0] = vpn;
	}
	free(tag);
	return misses;
}

int main(int argc, char **argv)
{
	if (argc != 8) {
		fprintf(stderr, "usage: lru TRACE N SETS WAYS PAGE_SHIFT stamp|mtf REPEATS\n");
		return 2;
	}
	uint64_t n = strtoull(argv[2], NULL, 10);
	uint64_t sets = strtoull(argv[3], NULL, 10), ways = strtoull(argv[4], NULL, 10);
	unsigned shift = (unsigned)atoi(argv[5]);
	int mtf = strcmp(argv[6], "mtf") == 0;
	int repeats = atoi(argv[7]);
	uint64_t *a = malloc(n * sizeof(*a));
	FILE *f = fopen(argv[1], "rb");

	if (!a || !f || fread(a, sizeof(*a), n, f) != n) {
		fprintf(stderr, "lru: cannot read %llu addresses from %s\n",
			(unsigned long long)n, argv[1]);
		return 1;
	}
	fclose(f);
	uint64_t best = UINT64_MAX, misses = 0;
	for (int r = 0; r < repeats; r++) {
		uint64_t t0 = now_ns();
		misses = mtf ? run_mtf(a, n, sets, ways, shift) : run_stamp(a, n, sets, ways, shift);
		uint64_t dt = now_ns() - t0;
		if (dt < best)
			best = dt;
	}
	printf("misses=%llu ns=%llu\n", (unsigned long long)misses, (unsigned long long)best);
	free(a);
	return 0;
}
