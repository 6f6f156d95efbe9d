/*
 * Plain-C full translation path: the reference kmm's path kernels are measured against.
 *
 *   path JOB_FILE REPEATS
 *
 * The model is kmm.walk's, for a stage-1 machine with LRU everywhere: per-CPU L1 I and D
 * TLBs and an L2 TLB, each probing every entry size it holds (the access's own size first,
 * then the others, smallest first; the first match is the hit); on an L2 miss a stage-1
 * walk that starts below the deepest level the walk cache covers and reads one descriptor
 * per level through the line caches (entering at the walk entry level), filling the walk
 * cache with each upper-level descriptor; table pages get frames in the order walks first
 * touch them, on the NUMA node their placement rule gives; then the access's line through
 * L1 I or L1 D, L2 and the shared LLC (allocate on miss everywhere), a memory read charged
 * to (CPU node, line node). No queueing, no overlap.
 *
 * It uses the same shortcuts as kmm's kernels, none of which changes a count: a hint per
 * tag slot (the entry last hit or filled there, checked first), a filter of key buckets
 * per structure (an empty bucket skips the set scan), recent table frames per level, and
 * per CPU the last L1 TLB lookup
 * and the last L1 line of fetches and of data (a repeat is a hit on what is already the
 * most recent entry). So the ratio measures the two implementations of one algorithm.
 *
 * JOB_FILE (little-endian), written by kmm.suite.bench.write_path_job:
 *   int64 n, cpus, nodes, table_capacity
 *   int64 tlb_geo[5][16]   (kmm.tlb.TLBState.geo)
 *   int64 cache_geo[5][4]  (kmm.cache.CacheState.geo)
 *   int64 walk_geo[32]     (stage-1 row of kmm.walk.PathConfig.walk_geometry)
 *   int64 cpu_nid[cpus]
 *   int64 va[n], pa[n]; uint8 flags[n], shift[n], leaf[n]; int32 asid[n], vmid[n], cpu[n], node[n]
 *
 * Every run starts from empty state; the best of REPEATS runs of the simulation loop (thread
 * CPU time) is reported with the counters of the last run, one "name=v0,v1,..." per line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* kmm.tlb */
enum { L1I, L1D, L2T, WALK, S2WALK, NSTRUCT = 5 };
enum { G_SETS, G_WAYS, G_BASE, G_POLICY, G_NPROBE, G_MAXSHIFT, G_LAST, G_PROBES = 8, G_LEN = 16 };
enum { T_ACCESSES, T_L1I_HITS, T_L1I_MISSES, T_L1D_HITS, T_L1D_MISSES, T_L2_HITS, T_L2_MISSES,
       T_MISSES, T_CONFLICTS, T_FILLS, T_EVICTIONS, T_N };
/* kmm.cache */
enum { C_L1I, C_L1D, C_L2, C_LLC, C_PARAMS };
enum { SRC_IFETCH, SRC_DATA, SRC_WALK };
enum { SERVED_L1, SERVED_L2, SERVED_LLC, SERVED_MEMORY };
enum { C_ACCESSES, C_L1I_HITS, C_L1I_MISSES, C_L1D_HITS, C_L1D_MISSES, C_L2_HITS, C_L2_MISSES,
       C_LLC_HITS, C_LLC_MISSES, C_MEM_READS, C_MEM_IFETCH, C_MEM_DATA, C_MEM_WALK,
       C_WALK_READS, C_N };
/* kmm.walk */
enum { W_ON, W_START, W_PAGE_SHIFT, W_NODES, W_TABLE_LEAF, W_SPACE, W_REGIME, W_SHIFT = 8,
       W_IDXBITS = 14, W_RULE = 20, W_FIXED = 26, W_LEN = 32 };
enum { R_FIXED, R_MEMORY, R_LOCAL, R_INTERLEAVE };
enum { WK_WALKS, WK_REFS, WK_S1_REFS, WK_S2_REFS, WK_HITS, WK_MISSES, WK_S2_WALKS,
       WK_S2_HITS, WK_S2_MISSES, WK_N };
#define TABLE_BASE ((int64_t)1 << 60)

struct tlb {
	int64_t geo[NSTRUCT][G_LEN];
	int64_t *key, *ctx, *stamp;	/* [cpu][entries] */
	int64_t *clock;			/* [cpu] */
	int64_t entries;
	int32_t *filt;			/* [cpu][struct][FILTER_BUCKETS]: valid keys per bucket */
	int64_t *hint;			/* [cpu][struct][HINT_SLOTS]: last entry per tag slot */
};

#define FILTER_BUCKETS 1024
#define HINT_SLOTS 64

static inline uint64_t bucket(int64_t key) { return ((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 54; }

struct caches {
	int64_t geo[5][4];
	int64_t *pkey, *pstamp, npriv;	/* private levels [cpu][npriv] */
	int64_t *lkey, *lstamp;		/* LLC */
	int64_t *clock;			/* [cpu + 1], row cpus for the LLC */
};

#define MEMO_SLOTS 64
struct frames {
	int64_t cap, next, refused;
	int64_t *tid, *k2, *frame;
	int64_t memo[5][MEMO_SLOTS][3];	/* per level: recent (tid, k2, frame) */
};

struct counts {
	int64_t tlb[T_N], cache[C_N], walk[WK_N];
	int64_t *mem;		/* [3][nodes][nodes] */
	int64_t *refs_node;	/* [nodes][nodes] */
	int64_t refs_level[2][5];
	int64_t served[3][4];
};

static int64_t cpus, nodes;
static int64_t wg[W_LEN];

/* CPU time of this thread: on a shared machine, the time the simulation ran, not the time
 * the scheduler gave to others (kmm's side is timed the same way: time.thread_time). */
static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline int64_t ctxword(int64_t asid, int64_t vmid) { return (vmid << 32) | (asid + 1); }

/* ---- TLBs --------------------------------------------------------------------------- */
static inline int64_t probe(struct tlb *t, int s, int64_t c, int64_t va, int64_t p, int64_t want,
			    int64_t glob)
{
	int64_t *g = t->geo[s];
	int64_t tag = va >> p, key = (tag << 6) | p;
	if (!t->filt[(c * NSTRUCT + s) * FILTER_BUCKETS + bucket(key)])
		return -1;
	int64_t row = g[G_BASE] + (int64_t)((uint64_t)tag & (uint64_t)(g[G_SETS] - 1)) * g[G_WAYS];
	int64_t *k = t->key + c * t->entries, *x = t->ctx + c * t->entries;
	for (int64_t e = row; e < row + g[G_WAYS]; e++)
		if (k[e] == key && (x[e] == want || x[e] == glob))
			return e;
	return -1;
}

/* The hint of the access's own size is checked first, then every size is probed (the
 * access's own first); a set is scanned only if its key's filter bucket is not empty. */
static int64_t tlb_lookup(struct tlb *t, int s, int64_t c, int64_t va, int64_t shift, int64_t asid,
			  int64_t vmid)
{
	int64_t *g = t->geo[s];
	int64_t want = ctxword(asid, vmid), glob = vmid << 32;
	int64_t first = min64(shift, g[G_MAXSHIFT]);
	int64_t *hint = t->hint + (c * NSTRUCT + s) * HINT_SLOTS + ((va >> first) & (HINT_SLOTS - 1));
	int64_t h = *hint, x = t->ctx[c * t->entries + h], hit;
	if (t->key[c * t->entries + h] == (((va >> first) << 6) | first) && (x == want || x == glob)) {
		hit = h;
	} else {
		hit = probe(t, s, c, va, first, want, glob);
		for (int64_t k = 0; hit < 0 && k < g[G_NPROBE]; k++)
			if (g[G_PROBES + k] != first)
				hit = probe(t, s, c, va, g[G_PROBES + k], want, glob);
	}
	if (hit >= 0) {
		*hint = hit;
		t->stamp[c * t->entries + hit] = ++t->clock[c];
	}
	return hit;
}

/* The way of the smallest stamp in a set, first on ties (an invalid way has stamp 0), and
 * that stamp; without branches: a select per way, or for wide sets one min-reduction over
 * (stamp, way) packed in an int64, which vectorises. */
static inline void oldest_way(const int64_t *st, int64_t row, int64_t ways, int64_t *victim,
			      int64_t *oldest)
{
	if (ways <= 8) {
		int64_t v = row, ms = st[row];
		for (int64_t e = row + 1; e < row + ways; e++) {
			v = st[e] < ms ? e : v;
			ms = st[e] < ms ? st[e] : ms;
		}
		*victim = v, *oldest = ms;
		return;
	}
	int64_t best = (int64_t)1 << 62;
	for (int64_t w = 0; w < ways; w++) {
		int64_t x = (st[row + w] << 16) | w;
		best = x < best ? x : best;
	}
	*victim = row + (best & 0xFFFF), *oldest = best >> 16;
}

static void tlb_fill(struct tlb *t, struct counts *n, int s, int64_t c, int64_t va, int64_t shift,
		     int64_t asid, int64_t vmid)
{
	int64_t *g = t->geo[s];
	int64_t p = min64(shift, g[G_MAXSHIFT]);
	int64_t tag = va >> p;
	int64_t row = g[G_BASE] + (int64_t)((uint64_t)tag & (uint64_t)(g[G_SETS] - 1)) * g[G_WAYS];
	int64_t *k = t->key + c * t->entries, *st = t->stamp + c * t->entries;
	int64_t victim, oldest;
	oldest_way(st, row, g[G_WAYS], &victim, &oldest);
	int32_t *filt = t->filt + (c * NSTRUCT + s) * FILTER_BUCKETS;
	if (oldest != 0)
		n->tlb[T_EVICTIONS]++;
	if (k[victim] != 0)
		filt[bucket(k[victim])]--;
	n->tlb[T_FILLS]++;
	t->hint[(c * NSTRUCT + s) * HINT_SLOTS + (tag & (HINT_SLOTS - 1))] = victim;
	k[victim] = (tag << 6) | p;
	filt[bucket(k[victim])]++;
	t->ctx[c * t->entries + victim] = ctxword(asid, vmid);
	st[victim] = ++t->clock[c];
}

/* 0: L1 hit, 1: L2 hit, 2: walk */
static int tlb_translate(struct tlb *t, struct counts *n, int64_t c, int64_t va, int flags,
			 int64_t shift, int64_t asid, int64_t vmid)
{
	int ifetch = (flags & 3) == 2;
	int64_t easid = (flags & 4) ? -1 : asid;
	int l1 = ifetch ? L1I : L1D;
	int has_l1 = t->geo[l1][G_SETS] > 0;

	n->tlb[T_ACCESSES]++;
	if (has_l1) {
		if (tlb_lookup(t, l1, c, va, shift, asid, vmid) >= 0) {
			n->tlb[ifetch ? T_L1I_HITS : T_L1D_HITS]++;
			return 0;
		}
		n->tlb[ifetch ? T_L1I_MISSES : T_L1D_MISSES]++;
	}
	if (t->geo[L2T][G_SETS] > 0) {
		if (tlb_lookup(t, L2T, c, va, shift, asid, vmid) >= 0) {
			n->tlb[T_L2_HITS]++;
			if (has_l1)
				tlb_fill(t, n, l1, c, va, shift, easid, vmid);
			return 1;
		}
		n->tlb[T_L2_MISSES]++;
		tlb_fill(t, n, L2T, c, va, shift, easid, vmid);
	}
	n->tlb[T_MISSES]++;
	if (has_l1)
		tlb_fill(t, n, l1, c, va, shift, easid, vmid);
	return 2;
}

/* tlb_translate behind the last-translation filter: last[2 * l1] and last[2 * l1 + 1] hold
 * the key and context of the CPU's last lookup in L1 structure l1 when it ended with the
 * entry of exactly that key; a repeat is that entry's hit, already the most recent. */
static int tlb_translate_last(struct tlb *t, struct counts *n, int64_t c, int64_t va, int flags,
			      int64_t shift, int64_t asid, int64_t vmid, int64_t *last)
{
	int l1 = (flags & 3) == 2 ? L1I : L1D;
	if (t->geo[l1][G_SETS] == 0 || t->geo[l1][G_LAST] != 0)
		return tlb_translate(t, n, c, va, flags, shift, asid, vmid);
	int64_t first = min64(shift, t->geo[l1][G_MAXSHIFT]);
	int64_t key = ((va >> first) << 6) | first, want = ctxword(asid, vmid);
	if (last[2 * l1] == key && last[2 * l1 + 1] == want) {
		n->tlb[T_ACCESSES]++;
		n->tlb[l1 == L1I ? T_L1I_HITS : T_L1D_HITS]++;
		return 0;
	}
	int r = tlb_translate(t, n, c, va, flags, shift, asid, vmid);
	int64_t e = t->hint[(c * NSTRUCT + l1) * HINT_SLOTS + ((va >> first) & (HINT_SLOTS - 1))];
	int64_t x = t->ctx[c * t->entries + e];
	if (t->key[c * t->entries + e] == key && (x == want || x == (vmid << 32))) {
		last[2 * l1] = key;
		last[2 * l1 + 1] = want;
	} else {
		last[2 * l1] = 0;
	}
	return r;
}

/* ---- line caches -------------------------------------------------------------------- */
static inline int touch(int64_t *key, int64_t *stamp, int64_t *geo, int64_t k, int64_t *clock)
{
	int64_t ways = geo[1];
	int64_t row = geo[2] + (int64_t)((uint64_t)(k >> 1) & (uint64_t)(geo[0] - 1)) * ways;
	int64_t victim = row, oldest = stamp[row];
	for (int64_t e = row; e < row + ways; e++) {
		if (key[e] == k) {
			stamp[e] = ++*clock;
			return 1;
		}
		victim = stamp[e] < oldest ? e : victim;
		oldest = stamp[e] < oldest ? stamp[e] : oldest;
	}
	key[victim] = k;
	stamp[victim] = ++*clock;
	return 0;
}

static int cache_access(struct caches *cs, struct counts *n, int64_t c, int64_t pa, int src,
			int64_t cnode, int64_t lnode)
{
	int64_t (*geo)[4] = cs->geo;
	int64_t k = ((pa >> geo[C_PARAMS][0]) << 1) | 1;
	int64_t lv;
	int64_t *pk = cs->pkey + c * cs->npriv, *ps = cs->pstamp + c * cs->npriv;

	n->cache[C_ACCESSES]++;
	if (src == SRC_IFETCH) {
		lv = C_L1I;
	} else if (src == SRC_DATA) {
		lv = C_L1D;
	} else {
		lv = geo[C_PARAMS][1];
		n->cache[C_WALK_READS]++;
	}
	if (lv <= C_L1D) {
		if (geo[lv][0] > 0) {
			if (touch(pk, ps, geo[lv], k, &cs->clock[c])) {
				n->cache[lv == C_L1I ? C_L1I_HITS : C_L1D_HITS]++;
				return SERVED_L1;
			}
			n->cache[lv == C_L1I ? C_L1I_MISSES : C_L1D_MISSES]++;
		}
		lv = C_L2;
	}
	if (lv == C_L2 && geo[C_L2][0] > 0) {
		if (touch(pk, ps, geo[C_L2], k, &cs->clock[c])) {
			n->cache[C_L2_HITS]++;
			return SERVED_L2;
		}
		n->cache[C_L2_MISSES]++;
	}
	if (geo[C_LLC][0] > 0) {
		if (touch(cs->lkey, cs->lstamp, geo[C_LLC], k, &cs->clock[cpus])) {
			n->cache[C_LLC_HITS]++;
			return SERVED_LLC;
		}
		n->cache[C_LLC_MISSES]++;
	}
	n->cache[C_MEM_READS]++;
	n->cache[C_MEM_IFETCH + src]++;
	n->mem[(src * nodes + cnode) * nodes + lnode]++;
	return SERVED_MEMORY;
}

/* cache_access of a fetch or data read behind the last-line filter: last[0] and last[1]
 * hold the key of the CPU's last line through L1 I and L1 D, already the most recent. */
static int cache_access_last(struct caches *cs, struct counts *n, int64_t c, int64_t pa, int src,
			     int64_t cnode, int64_t lnode, int64_t *last)
{
	int64_t k = ((pa >> cs->geo[C_PARAMS][0]) << 1) | 1;
	int lv = src == SRC_IFETCH ? C_L1I : C_L1D;
	if (cs->geo[lv][0] == 0)
		return cache_access(cs, n, c, pa, src, cnode, lnode);
	if (last[lv] == k) {
		n->cache[C_ACCESSES]++;
		n->cache[lv == C_L1I ? C_L1I_HITS : C_L1D_HITS]++;
		return SERVED_L1;
	}
	last[lv] = k;
	return cache_access(cs, n, c, pa, src, cnode, lnode);
}

/* ---- walks -------------------------------------------------------------------------- */
static inline uint64_t mix(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Frame of a table page, numbered in first-touch order (open addressing). */
static int64_t table_frame(struct frames *f, int64_t level, int64_t a, int64_t space, int64_t copy)
{
	int64_t tid = level == wg[W_START] ? (a < 0) : a >> wg[W_SHIFT + level];
	int64_t k2 = ((int64_t)(level + 1) << 59) | ((copy + 1) << 48) | (wg[W_REGIME] << 20) | space;
	uint64_t h = mix((uint64_t)tid ^ mix((uint64_t)k2));
	int64_t *m = f->memo[level + 1][h & (MEMO_SLOTS - 1)];
	if (m[2] >= 0 && m[0] == tid && m[1] == k2)
		return m[2];
	uint64_t j = h & (uint64_t)(f->cap - 1);
	for (;;) {
		if (f->frame[j] < 0) {
			if (4 * f->next >= 3 * f->cap) {
				f->refused++;
				return 0;
			}
			f->tid[j] = tid;
			f->k2[j] = k2;
			f->frame[j] = f->next++;
			break;
		}
		if (f->tid[j] == tid && f->k2[j] == k2)
			break;
		j = (j + 1) & (uint64_t)(f->cap - 1);
	}
	m[0] = tid, m[1] = k2, m[2] = f->frame[j];
	return m[2];
}

static void walk_read(struct caches *cs, struct counts *n, int64_t c, int64_t dpa, int64_t cnode,
		      int64_t tnode, int64_t level)
{
	n->refs_node[cnode * nodes + tnode]++;
	n->refs_level[0][level + 1]++;
	n->served[SRC_WALK][cache_access(cs, n, c, dpa, SRC_WALK, cnode, tnode)]++;
}

static int64_t stage1_walk(struct tlb *t, struct caches *cs, struct frames *f, struct counts *n,
			   int64_t c, int64_t va, int64_t leaf, int64_t asid, int64_t vmid, int glob,
			   int64_t cnode, int64_t mnode)
{
	int64_t start = wg[W_START], first = start;
	int64_t easid = glob ? -1 : asid;
	int have_wc = t->geo[WALK][G_SETS] > 0;

	if (leaf > start && have_wc) {
		int64_t e = tlb_lookup(t, WALK, c, va, wg[W_SHIFT + leaf], asid, vmid);
		int64_t hit = start - 1;
		if (e >= 0) {
			int64_t p = t->key[c * t->entries + e] & 63;
			hit = 3;
			for (int64_t lv = start; lv < 4; lv++)
				if (wg[W_SHIFT + lv + 1] == p) {
					hit = lv;
					break;
				}
		}
		if (hit >= start) {
			n->walk[WK_HITS]++;
			first = min64(hit + 1, leaf);
		} else {
			n->walk[WK_MISSES]++;
		}
	}
	int64_t space = (vmid << 32) | (easid + 1);
	for (int64_t lv = first; lv <= leaf; lv++) {
		int64_t rule = wg[W_RULE + lv + 1];
		int64_t frame = table_frame(f, lv, va, space, rule == R_LOCAL ? cnode : -1);
		int64_t idx = (va >> wg[W_SHIFT + lv + 1]) & (((int64_t)1 << wg[W_IDXBITS + lv + 1]) - 1);
		int64_t dpa = TABLE_BASE + (frame << wg[W_PAGE_SHIFT]) + (idx << 3);
		int64_t tnode = rule == R_FIXED ? wg[W_FIXED + lv + 1] : rule == R_MEMORY ? mnode :
				rule == R_LOCAL ? cnode : frame % wg[W_NODES];
		walk_read(cs, n, c, dpa, cnode, tnode, lv);
		if (lv < leaf && have_wc)
			tlb_fill(t, n, WALK, c, va, wg[W_SHIFT + lv + 1], easid, vmid);
	}
	n->walk[WK_S1_REFS] += leaf - first + 1;
	return leaf - first + 1;
}

/* ---- the run ------------------------------------------------------------------------ */
struct job {
	int64_t n, cap;
	int64_t tgeo[NSTRUCT][G_LEN], cgeo[5][4];
	int64_t *cpu_nid, *va, *pa;
	uint8_t *flags, *shift, *leaf;
	int32_t *asid, *vmid, *cpu, *node;
};

static void *zalloc(size_t n)
{
	void *p = calloc(n ? n : 1, 1);
	if (!p) {
		fprintf(stderr, "path: out of memory\n");
		exit(1);
	}
	return p;
}

static uint64_t run(struct job *jb, struct counts *n)
{
	struct tlb t;
	struct caches cs;
	struct frames f;

	memcpy(t.geo, jb->tgeo, sizeof(t.geo));
	t.entries = 0;
	for (int s = 0; s < NSTRUCT; s++)
		t.entries += t.geo[s][G_SETS] * t.geo[s][G_WAYS];
	t.key = zalloc(cpus * t.entries * 8);
	t.ctx = zalloc(cpus * t.entries * 8);
	t.stamp = zalloc(cpus * t.entries * 8);
	t.clock = zalloc(cpus * 8);
	t.filt = zalloc(cpus * NSTRUCT * FILTER_BUCKETS * 4);
	t.hint = zalloc(cpus * NSTRUCT * HINT_SLOTS * 8);
	for (int64_t c = 0; c < cpus; c++)
		for (int s = 0; s < NSTRUCT; s++)
			for (int h = 0; h < HINT_SLOTS; h++)
				t.hint[(c * NSTRUCT + s) * HINT_SLOTS + h] = t.geo[s][G_BASE];
	memcpy(cs.geo, jb->cgeo, sizeof(cs.geo));
	cs.npriv = 0;
	for (int lv = C_L1I; lv <= C_L2; lv++)
		cs.npriv += cs.geo[lv][0] * cs.geo[lv][1];
	cs.pkey = zalloc(cpus * cs.npriv * 8);
	cs.pstamp = zalloc(cpus * cs.npriv * 8);
	cs.lkey = zalloc(cs.geo[C_LLC][0] * cs.geo[C_LLC][1] * 8);
	cs.lstamp = zalloc(cs.geo[C_LLC][0] * cs.geo[C_LLC][1] * 8);
	cs.clock = zalloc((cpus + 1) * 8);
	f.cap = jb->cap;
	f.next = f.refused = 0;
	f.tid = zalloc(f.cap * 8);
	f.k2 = zalloc(f.cap * 8);
	f.frame = malloc(f.cap * 8);
	for (int64_t j = 0; j < f.cap; j++)
		f.frame[j] = -1;
	memset(f.memo, 0xff, sizeof(f.memo));
	memset(n, 0, sizeof(*n));
	n->mem = zalloc(3 * nodes * nodes * 8);
	n->refs_node = zalloc(nodes * nodes * 8);

	int64_t *last = zalloc(cpus * 6 * 8);	/* per CPU: TLB filter (4), line filter (2) */
	uint64_t t0 = now_ns();
	for (int64_t i = 0; i < jb->n; i++) {
		int64_t c = jb->cpu[i], cnode = jb->cpu_nid[c], va = jb->va[i];
		int flags = jb->flags[i];
		int64_t asid = jb->asid[i], vmid = jb->vmid[i], mnode = jb->node[i];
		if (tlb_translate_last(&t, n, c, va, flags, jb->shift[i], asid, vmid, last + 6 * c) == 2) {
			n->walk[WK_WALKS]++;
			n->walk[WK_REFS] += stage1_walk(&t, &cs, &f, n, c, va, jb->leaf[i], asid, vmid,
							(flags & 4) != 0, cnode, mnode);
			if (cs.geo[C_PARAMS][1] == C_L1D)
				last[6 * c + 4 + C_L1D] = 0;
		}
		int src = (flags & 3) == 2 ? SRC_IFETCH : SRC_DATA;
		n->served[src][cache_access_last(&cs, n, c, jb->pa[i], src, cnode, mnode,
						 last + 6 * c + 4)]++;
	}
	uint64_t dt = now_ns() - t0;
	free(last);
	if (f.refused) {
		fprintf(stderr, "path: more table pages than the table map holds\n");
		exit(1);
	}
	free(t.key), free(t.ctx), free(t.stamp), free(t.clock), free(t.filt), free(t.hint);
	free(cs.pkey), free(cs.pstamp), free(cs.lkey), free(cs.lstamp), free(cs.clock);
	free(f.tid), free(f.k2), free(f.frame);
	return dt;
}

static void read_exact(FILE *fp, void *p, size_t bytes, const char *path)
{
	if (fread(p, 1, bytes, fp) != bytes) {
		fprintf(stderr, "path: %s is truncated\n", path);
		exit(1);
	}
}

static void print_row(const char *name, const int64_t *v, int64_t k)
{
	printf("%s=", name);
	for (int64_t i = 0; i < k; i++)
		printf(i ? ",%lld" : "%lld", (long long)v[i]);
	printf("\n");
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: path JOB_FILE REPEATS\n");
		return 2;
	}
	FILE *fp = fopen(argv[1], "rb");
	if (!fp) {
		fprintf(stderr, "path: cannot open %s\n", argv[1]);
		return 1;
	}
	struct job jb;
	int64_t hdr[4];
	read_exact(fp, hdr, sizeof(hdr), argv[1]);
	jb.n = hdr[0], cpus = hdr[1], nodes = hdr[2], jb.cap = hdr[3];
	read_exact(fp, jb.tgeo, sizeof(jb.tgeo), argv[1]);
	read_exact(fp, jb.cgeo, sizeof(jb.cgeo), argv[1]);
	read_exact(fp, wg, sizeof(wg), argv[1]);
	int64_t n = jb.n;
	jb.cpu_nid = zalloc(cpus * 8);
	read_exact(fp, jb.cpu_nid, cpus * 8, argv[1]);
	jb.va = zalloc(n * 8), jb.pa = zalloc(n * 8);
	jb.flags = zalloc(n), jb.shift = zalloc(n), jb.leaf = zalloc(n);
	jb.asid = zalloc(n * 4), jb.vmid = zalloc(n * 4), jb.cpu = zalloc(n * 4), jb.node = zalloc(n * 4);
	read_exact(fp, jb.va, n * 8, argv[1]);
	read_exact(fp, jb.pa, n * 8, argv[1]);
	read_exact(fp, jb.flags, n, argv[1]);
	read_exact(fp, jb.shift, n, argv[1]);
	read_exact(fp, jb.leaf, n, argv[1]);
	read_exact(fp, jb.asid, n * 4, argv[1]);
	read_exact(fp, jb.vmid, n * 4, argv[1]);
	read_exact(fp, jb.cpu, n * 4, argv[1]);
	read_exact(fp, jb.node, n * 4, argv[1]);
	fclose(fp);

	int repeats = atoi(argv[2]);
	uint64_t best = UINT64_MAX;
	struct counts cnt;
	for (int r = 0; r < (repeats > 0 ? repeats : 1); r++) {
		if (r) {
			free(cnt.mem);
			free(cnt.refs_node);
		}
		uint64_t dt = run(&jb, &cnt);
		if (dt < best)
			best = dt;
	}
	printf("ns=%llu\n", (unsigned long long)best);
	print_row("tlb", cnt.tlb, T_N);
	print_row("cache", cnt.cache, C_N);
	print_row("walk", cnt.walk, WK_N);
	print_row("mem", cnt.mem, 3 * nodes * nodes);
	print_row("refs_node", cnt.refs_node, nodes * nodes);
	print_row("refs_level", &cnt.refs_level[0][0], 10);
	print_row("served", &cnt.served[0][0], 12);
	return 0;
}
