"""Page allocation for Address Space Isolation (ASI): the RFC design and its alternatives.

ASI runs the kernel in a second, "restricted" address space whose physmap leaves sensitive
memory unmapped (LSF/MM/BPF 2025 topic "Page allocation for ASI", ASI RFC v1/v2). Mapping a
page there is cheap; unmapping it needs a TLB shootdown, since other CPUs may hold its
translation; memory that held sensitive data must be zeroed before it is mapped. This module
runs allocation/free streams through :mod:`kmm.buddy` (pageblocks, migratetypes, fallbacks),
tracks per page (the buddy's flag bits) whether it is mapped in the restricted physmap,
holds sensitive data, or was unmapped while clean, keeps per-CPU TLBs of restricted-space
translations (:mod:`kmm.tlb`) filled by accesses, and invalidates them with
:mod:`kmm.invalidate`, so a stale translation survives exactly until its shootdown.

Policies (:class:`Policy`), one code path each:

0. ``NONE``: no restricted address space (baseline).
1. ``RFC``: every free page is unmapped; a nonsensitive allocation maps its pages at the end
   of allocation (zeroing those that held sensitive data); a freed nonsensitive block goes
   on a queue that a worker drains every ``worker_interval_ns`` (or when it holds
   ``worker_batch_pages``), unmapping the batch with one shootdown before the pages return to
   the free lists; an allocation that fails waits for the queue (direct reclaim).
2. ``TRACKED``: sensitivity is part of the migratetype; free nonsensitive pages stay
   mapped. :class:`Conversion` ``POSTED`` (the default) is the RFC "[PATCH RFC 00/11] mm:
   ASI integration for the page allocator" (Brendan Jackman, linux-mm, 2025-03-13): only
   ``MIGRATE_UNMOVABLE`` is split by sensitivity (every nonsensitive allocation is
   unmovable-nonsensitive, :func:`posted_migrate_table`); sensitive types fall back only
   within their sensitivity; a nonsensitive allocation falls back to sensitive memory only
   by claiming whole free pageblocks (patch 10); a sensitive allocation whose own
   sensitivity is exhausted takes the smallest free nonsensitive block of at least a
   pageblock, unmaps it with one shootdown (IRQs on, zone lock dropped), retypes it and
   frees the remainder (``__rmqueue_asi_unmap``, patch 11; every sensitive allocation of the
   streams may block, as ``ALLOC_ASI_UNMAP`` requires). ``FALLBACK`` is v6.1's
   ``__rmqueue_fallback`` across sensitivity (three mobility types per sensitivity, partial
   steals, claims by majority, the shootdown in line). A pageblock turning nonsensitive has
   its clean free pages mapped; those holding sensitive data stay unmapped, marked
   ``F_ZERO_DEFERRED``, until a nonsensitive allocation takes them (zeroed, then mapped) or
   a sensitive one does (never zeroed) (:class:`Zeroing` ``LAZY``, the default: per page
   when mapped); ``EAGER`` zeroes and maps them all at the conversion.
3. ``TRACKED_TARGET``: policy 2, plus a worker that, when more than
   ``target_free_mapped_pages`` free pages are mapped, converts the nonsensitive pageblocks
   with the most free mapped pages back to sensitive (one shootdown per run).
4. ``SYNC_FLUSH``: like ``RFC`` but every nonsensitive free unmaps and shoots down at once.
5. ``UNMAPPED``: the 2026 design, "[PATCH RFC 00/19] mm: Add __GFP_UNMAPPED" (Brendan
   Jackman, linux-mm, 2026-02-25) and "[PATCH v2 00/22] mm: Add __GFP_UNMAPPED"
   (2026-03-20, <20260320-page_alloc-unmapped-v2-0-28bf1bd54f41@google.com>), with
   sensitive memory allocated as ``__GFP_UNMAPPED`` and nonsensitive memory as ordinary
   (mapped) memory. Free lists are indexed by *freetype*, a migratetype plus flags, the
   first of which, ``FREETYPE_UNMAPPED``, marks pages absent from the direct map, with a
   matching pageblock flag (patch 10/19: "pools of already-unmapped pages", physically
   grouped like migratetypes; :func:`unmapped_migrate_table`). An allocation takes from
   its freetype's lists, falling back only to freetypes of the same flags; when they are
   empty, ``__rmqueue_direct_map`` (patch 17/19, "mm/page_alloc: implement
   __GFP_UNMAPPED allocations"; not with ``ALLOC_NOBLOCK``) takes a free block of at least
   a pageblock from the freetype of the other flags ("Need to [un]map a whole pageblock
   (otherwise it might require allocating pagetables)"), drops the zone lock, changes the
   direct map of the whole block with IRQs on (unmapping: one ``flush_tlb_kernel_range``
   of the block; mapping: no flush), retypes its pageblocks and frees the remainder on
   the new freetype's lists. The conversion is symmetric: a mapped allocation that finds
   no mapped memory maps a whole free unmapped block the same way. Freed pages go back to
   their pageblock's freetype: a freed unmapped page stays unmapped (no flush on free) and
   a freed mapped page stays mapped, until a whole free block of them is taken by the
   other flags. Unmapped pages cannot be zeroed through the direct map, so every zeroing
   of an unmapped page (``init_on_alloc`` of a sensitive allocation; a formerly sensitive
   page of a block being mapped, zeroed before it is mapped) goes through the *mermap*
   ("[PATCH v2 20/22] mm/page_alloc: implement __GFP_UNMAPPED|__GFP_ZERO allocations"): a
   per-CPU region of the mm-local address space handed out in order, each page mapped and
   unmapped again (a PTE store and a PTE clear, ``map_page_ns`` + ``unmap_page_ns``) with
   no flush, the whole region flushed once before the CPU starts again at its base
   (mm/mermap.c ``mermap_alloc``; the last page is ``mermap_get_reserved``'s). That flush
   (``arch_mermap_flush_tlb``) is local on x86 (``flush_tlb_local``: "No shootdown allowed,
   IRQs may be off"), priced as ``full_flush_ns`` plus the re-walk of the CPU's own work
   (:meth:`AsiRun.local_rewalks`, not an interruption of anyone else), and on arm64 "will
   need to be a broadcast TLB flush" (include/linux/mermap.h; the series implements x86
   only), priced as a kernel-range shootdown of the CPU's region (:func:`kmm.invalidate`,
   TLBI broadcast). Settled questions: (1) the posting's flag covers only unmovable
   memory, "just to avoid bloating the data structures (there isn't a user for that type
   of allocation yet ...)" (Brendan Jackman, "Re: [PATCH RFC 00/19] mm: Add
   __GFP_UNMAPPED", 2026-03-16); ASI's sensitive user pages are such a user, so
   ``unmapped_movable`` (published true) gives every mobility both freetypes and boots
   with every page mapped, as the direct map does; false keeps the posting as it stands
   for unmovable memory and handles sensitive movable and reclaimable memory as policy 2
   does (always unmapped, booting with the restricted physmap empty). (2) The mermap
   replaces no broadcast shootdown in ASI: the whole-block unmap still shoots down (as
   policy 2's ``__rmqueue_asi_unmap`` does), and the zeroing that ASI does through the
   unrestricted direct map needs the mermap here, adding its PTE writes and flushes
   (:attr:`AsiEvent.MERMAP_PAGES`, ``MERMAP_FLUSHES``, ``MERMAP_NS``); its only saving is
   that a CPU needs no shootdown to read an unmapped page. The options of policies 2 and 3
   (flush rank, zeroing, conversion) do not apply; there is no slow-path cross-flag step,
   no worker and no lazy zeroing.

Where the shootdown that lets a sensitive allocation take nonsensitive memory ranks in the
allocation path (policies 2 and 3, :class:`FlushRank`; the topic's question "how is that
prioritised and structured wrt. direct compact/reclaim"): ``FAST_PATH`` (the default) lets
``__rmqueue``'s fallbacks cross sensitivity like any migratetype fallback; otherwise the
fast path stays within the allocation's sensitivity and, when it fails, the slow path runs
direct compaction, direct reclaim and the cross-sensitivity fallback (convert, unmap, shoot
down) in the order the rank names: ``FIRST`` flush, compact, reclaim;
``AFTER_COMPACTION`` compact, flush, reclaim; ``AFTER_RECLAIM`` compact, reclaim, flush.
Compaction (order 1 to pageblock_order only, as ``__alloc_pages_direct_compact`` skips
order 0) picks the aligned range of a sensitive pageblock that needs the fewest pages
migrated, holding only free pages and movable sensitive blocks, isolates the pageblock
(``MIGRATE_ISOLATE``), moves each block to a free block of its own sensitivity elsewhere,
then restores the pageblock's type. Reclaim frees up to ``reclaim_batch_pages`` pages of
live reclaimable allocations (clean page cache), oldest first, then retries, at most
``MAX_RECLAIM_RETRIES`` rounds; an allocation so reclaimed is not freed again by the stream.
Nonsensitive allocations never need a shootdown to be satisfied and keep the full fallbacks.

Whatever the policy, a page handed to a sensitive allocation is unmapped and shot down
before it is returned, and a page handed to a nonsensitive one is zeroed (if it held
sensitive data) and mapped; the policies differ in how often those cases arise. With
``init_on_alloc`` every allocated page is zeroed anyway (``post_alloc_hook``; its cost is
counted apart, not as ASI work), so a zeroing while allocating adds nothing; zeroing at a
conversion still does. ``nofragment`` is ``ALLOC_NOFRAGMENT`` on the fast path.

The machine (:class:`Arch`): x86-64 (4K pages, 2 MiB pageblocks, IPI or INVLPGB
shootdowns) or arm64 (the granule's geometry, TLBI broadcast).

Restricted physmap designs (:class:`Physmap`): ``ON_DEMAND`` (the RFC: page-table pages
allocated when a page is first mapped in a region with no table), ``SYNCED`` (kept in sync
with the unrestricted physmap at PTE level, differing only in the present bit: every table
exists from boot) and ``SYNCED_BLOCKS`` (in sync, but a pageblock whose pages are all mapped
is one block leaf; making its pages differ splits it, allocating a PTE table). Page-table
pages come from a separate reserve, not from the modelled pool.

What other CPUs feel (:meth:`AsiRun.interruption_ns`, claim A2): per CPU and 1 ms window,
the time in flush IPI handlers of other CPUs' shootdowns, in runs of a background worker
(on CPU 0), and in re-walking what the shootdowns removed from its TLB (:class:`Rewalk`,
priced by :mod:`kmm.timing`: the restricted-space entries of the range, and after a flush
of everything also the CPU's own working set). Work inside an allocation or free is that
operation's latency. The re-walks of every CPU count in the total ASI work.

The invariant — no page that holds sensitive data (allocated sensitive, or freed and not yet
zeroed) is mapped in the restricted physmap or covered by a TLB entry of any CPU — can be
checked after every operation (``check_invariant``; :attr:`AsiEvent.VIOLATIONS`).

Per-CPU page lists (``pcp``, :class:`AsiConfig`): allocations and frees of the orders
``pcp_allowed_order`` admits (up to ``PAGE_ALLOC_COSTLY_ORDER``, and pageblock_order) go
through CPU-local lists (:func:`kmm.buddy.pcp_alloc`, v6.1's ``rmqueue_pcplist`` and
``free_unref_page_commit``), one per migratetype and order; the posting gives
``MIGRATE_UNMOVABLE_NONSENSITIVE`` lists of its own, below ``MIGRATE_PCPTYPES`` ("[PATCH RFC
09/11] mm/page_alloc: Split MIGRATE_UNMOVABLE by sensitivity", 2025-03-13), and so does the
tracked table here (one list per type code), so a list never mixes sensitivities. A page on
a list keeps its flag bits, its mapping among them: a freed nonsensitive page stays mapped
and the next nonsensitive allocation on that CPU takes it with nothing to map; a page on a
list is allocated as far as the free lists are concerned, so it is neither merged nor moved
by a pageblock conversion, and ``__rmqueue_asi_unmap`` (which takes whole free blocks off the
free lists) cannot take a pageblock one of its pages waits in, until ``free_pcppages_bulk``
returns it (at ``high``) or ``drain_all_pages`` does: once in a slow path whose direct
reclaim made progress but whose retry failed (``__alloc_pages_direct_reclaim``; the
fast-path rank has no slow path, its failures are what the slow path would retry), and
before each run of the policy-3 worker (its pageblocks' free mapped pages then all lie on
the free lists). A
refill (``rmqueue_bulk``) uses the allocation's own pass (``ALLOC_NOFRAGMENT`` floor; the
posted nonsensitive floor of a pageblock); the mapped pages a sensitive refill moves onto a
sensitive list (v6.1's fallbacks across sensitivity, or the policy-3 worker's leftovers)
are unmapped in the allocation's own shootdown. Drained pages go to the list of the type
they were stored with (v6.1; since v6.10 the pageblock's type at the drain). The RFC
policies' queue frees its drained pages through the draining CPU's lists. Compaction and
``__rmqueue_asi_unmap`` take and return blocks on the free lists directly.

Not modelled: atomic sensitive allocations (policy 5's ``ALLOC_NOBLOCK`` allocations,
which may not convert a block); policy 5's ``mermap_get`` failures, whose fallback
``mermap_get_reserved`` uses the same region and flush, and compaction towards unmapped
pageblocks; compaction and reclaim outside the slow path of
sensitive allocations (kcompactd, kswapd, watermarks), compaction of orders above the
pageblock, compaction deferral, the refaults that reclaimed page cache costs later; the RFC
policies' only reclaim is waiting on their queue.
"""
from .model import (_P_QN, Arch, AsiConfig, AsiCosts, AsiEvent, AsiRun, AsiState, build, BurstSource,
    Conversion, F_DIRTY, JITTER_WINDOW_NS, F_MAPPED, F_QUEUED, F_SENS, F_UNMAPPED_NS, F_ZERO_DEFERRED, FlushRank,
    MAX_RECLAIM_RETRIES, MT_ISOLATE, own_sensitivity_fallbacks, Physmap, Policy,
    posted_migrate_table, Rewalk, simulate,
    tracked_migrate_table, unmapped_migrate_table, Zeroing)
from .kernels import (check_invariant, run_stream)
from .workload import (AllocClass, BURST_ORDER, make_workload, MIXES, Workload)
from .study import (ASSUMED, assumed_specs, CHARTS, claim_evidence, evidence, frame, STUDY, burst_frame, check_params, claim_specs, compare_policies,
    config_for, DEFAULTS, evaluate, EVIDENCE_VARIANTS, explanations, granule_sweep, joint_sweep,
    latency_cdf, notes, params_from, physmap_compare, policy_frame, POLICY_NAMES,
    RANK_NAMES, slowpath_compare, slowpath_cost_sweep, SLOWPATH_COSTS, swings, sweep_records, target_sweep,
    unmapped_compare, UNMAPPED_ONLY, Variant, variant_config, VARIANTS, workload_for, ZEROING_NAMES)

__all__ = ["STUDY", "Policy", "FlushRank", "Zeroing", "Conversion", "Arch", "Physmap", "AsiEvent", "BurstSource",
           "AsiCosts", "AsiConfig", "Rewalk", "JITTER_WINDOW_NS", "MAX_RECLAIM_RETRIES", "MT_ISOLATE", "tracked_migrate_table",
           "posted_migrate_table", "unmapped_migrate_table",
           "own_sensitivity_fallbacks", "AsiState", "Workload", "AllocClass", "MIXES", "BURST_ORDER",
           "make_workload", "AsiRun", "build", "simulate", "run_stream", "check_invariant",
           "DEFAULTS", "POLICY_NAMES", "RANK_NAMES", "ZEROING_NAMES", "Variant", "VARIANTS",
           "SLOWPATH_COSTS", "UNMAPPED_ONLY", "unmapped_compare", "check_params", "params_from", "config_for", "variant_config",
           "workload_for", "compare_policies", "slowpath_compare", "slowpath_cost_sweep",
           "target_sweep", "granule_sweep", "physmap_compare", "policy_frame", "latency_cdf",
           "burst_frame", "evaluate", "assumed_specs", "claim_specs", "joint_sweep",
           "sweep_records", "swings", "claim_evidence", "notes", "explanations"]
