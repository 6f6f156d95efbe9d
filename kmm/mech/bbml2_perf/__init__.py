"""BBML2 block-mapped linear map: kernel TLB pressure and the thread's benchmarks.

The "arm64: support FEAT_BBM level 2 and large block mapping when rodata=full" series lets
the kernel paint the linear map with blocks and contiguous ranges under ``rodata=full``,
splitting a leaf only where a permission change needs a boundary. Without it,
``rodata=full`` forces ``NO_BLOCK_MAPPINGS | NO_CONT_MAPPINGS`` on the whole linear map
(arch/arm64/mm/mmu.c ``map_mem``, ``can_set_direct_map()``), i.e. 4K PTEs: 512 MiB of PTE
tables for 256 GiB, and one TLB entry per 4K page the kernel touches.

This module evaluates the thread's benchmark claims on its machine (AmpereOne, 192 cores,
one socket, 256 GB, 4K pages, 48-bit VA): for each linear-map :class:`Policy` the kernel's
data-side accesses of a benchmark-shaped workload run through the engine's TLB hierarchy
(:mod:`kmm.tlb`), and the misses through page walks whose descriptor reads compete with
data for the caches; counted events times cost parameters give cycles per operation,
throughput, kernel TLB MPKI and, for memcached, a per-request service-time distribution
that drives a closed-loop queue (:func:`closed_loop`) for P99 latency.

Policies (:class:`Policy`)
--------------------------
``FULL_PTES``   rodata=full without BBML2: the linear map is PTEs only, no contiguous hint.
``RODATA_ON``  rodata=on: PUD/PMD blocks and contiguous ranges wherever aligned; the linear
               alias of the kernel image ``[_stext, __init_begin)`` without contiguous
               ranges (``map_mem``: ``NO_CONT_MAPPINGS`` for that interval).
``FULL_BBML2`` rodata=full with the series: painted as rodata=on, then every permission
               change made by the running kernel (module text and rodata made read-only,
               with their linear aliases under rodata=full) splits only at its boundaries
               (``PermSplit.BOUNDARY`` of :mod:`kmm.pagetable`).

The rest of the kernel's address space is the same under every policy: kernel text in the
image (2M blocks, ``map_kernel_segment``), module text (4K PTEs in the module area),
vmalloc'd thread stacks (``VMAP_STACK``, 4K PTEs), vmemmap (PMD blocks,
``vmemmap_populate`` with section maps) and user memory (4K PTEs, ASID-tagged).

Workload access patterns (derived from the code paths, fixed before any result was read)
-----------------------------------------------------------------------------------------
Each operation is a list of *touches*: a run of consecutive 64-byte lines inside one 4 KiB
page, with a kind (load, store, instruction fetch), the exception level making it (EL1 for
kernel, EL0 for user code) and the region holding it. The TLB sees one lookup per touch
(later lines of the same touch hit the L1 TLB entry just filled); the caches see every line.

memcached (B3-B6), one request per operation, memtier_benchmark defaults (4 client threads
x 50 connections, ``--ratio 1:10`` SET:GET, 32-byte values, random keys, one outstanding
request per connection) against memcached defaults (4 worker threads, ``-m 64`` MiB of item
memory), so one worker core serves ``connections`` = 50 connections:

- receive softirq: the NIC's completion-ring entry (linear map, advancing), the receive
  buffer in a ``page_pool`` page (linear map; ``rx_ring_pages`` pages cycling, two
  buffers per page) and its ``struct page`` (vmemmap), an ``sk_buff`` from the per-CPU
  slab (a small hot pool), the connection's ``tcp_sock`` (``TCP`` slab, 2.3 KiB objects
  packed 13 to a 32 KiB slab) and ``epitem`` (128 B), the ``eventpoll`` and task;
- ``epoll_wait`` + ``read``: the thread's vmalloc'd stack, the connection's ``file``
  (256 B, ``filp``) and socket inode (``sock_inode_cache``, 0.7 KiB), ``tcp_sock`` again,
  ``copy_to_user`` of the request (about 70 B) from the receive buffer into the
  connection's read buffer (user memory, touched at EL1);
- memcached itself (EL0): the connection structure and read buffer, one hash bucket
  (random over an 8 MiB table: 2^20 buckets once 64 MiB of small items are stored), the
  item (random over 64 MiB of items);
- ``sendmsg``: stack, ``file``, socket inode, ``tcp_sock``, an ``sk_buff`` (fclone slab,
  hot), ``copy_from_user`` of the response from the item into the task's page fragment
  (order-3 pages filled sequentially), route/neighbour/qdisc objects (a few hot pages),
  the transmit descriptor ring, the doorbell (ioremap, vmalloc area);
- transmit completion: completion-ring entry, ``sk_buff`` free, fragment ``struct page``;
- instruction fetch: the network stack's path through the kernel image (about 100 4 KiB
  text granules, 2M-block mapped) and the NIC driver's module text (16 granules, 4K PTEs);
  memcached's own text (user, 4K PTEs).

Physical placement: boot-time allocations fill the bottom of RAM (the boot window, the
4 GiB the thread's meminfo shows in use on the idle machine); the slab pages of the
connection objects and network buffers a benchmark allocates come from the
``kernel_spread_bytes`` above it (:meth:`KernelLayout.runtime_window`). Under
``FULL_BBML2`` the linear aliases of module memory made read-only at load sit in the boot
window (modules loaded at boot) or, as a sensitivity case, among the benchmark's objects.

dm-crypt (B7), one 4 KiB block per operation, the v3 cover letter's fio job (``--rw=write --bs=4k
--ioengine=sync --iodepth=1 --numjobs=1``, buffered, ext4 on dm-crypt on a 128 GB ``brd``
ramdisk, 100 GB written): the writer's ``write`` (stack, file and inode, page-cache xarray
node, a new page-cache page and its ``struct page``, ``copy_from_user`` of 4 KiB from fio's
buffer, a ``buffer_head``); writeback of the block written ``writeback_lag_ops`` earlier
(the dirty limit keeps tens of GB in flight, so the page is cold): dm-crypt reads the
page-cache page and writes a bounce page (``crypt_alloc_buffer``: mempool pages recycled
LIFO, hot), brd zeroes a newly allocated page (``__GFP_ZERO``) and copies the bounce page
into it, xarray nodes of brd and of the page cache, ``struct page`` of each page; module
text of dm-crypt and brd. Every op's work is charged to one core (the writer is throttled to
writeback once the dirty limit is reached).

Sequential read (B8), one ``read`` of ``read_bytes`` (xfs_io ``pread`` default 4 KiB) per
operation from a cached 100 GB XFS file: stack, file and inode, the page-cache xarray node,
the folio's ``struct page``, ``copy_page_to_iter`` of the page (cold: 100 GB does not fit
any cache) into xfs_io's user buffer (hot, touched at EL1), XFS module text.

Page-cache, brd and bounce pages come from the page allocator in physically contiguous runs
of ``run_pages`` pages (:func:`page_runs`) placed at random over all of RAM (200 GB of
page cache and ramdisk cover most of it). Other granules: touches stay cut in 4 KiB chunks,
allocations are pages of the granule (consecutive 4 KiB blocks share a page-cache and a
ramdisk page), ``THREAD_SIZE`` is a page when pages exceed 16 KiB, vmemmap uses base pages.

From events to the claims
-------------------------
:func:`simulate_events` runs every touch of one core through the engine's full path
(:class:`kmm.walk.Path`: TLBs, ``stage1_walk`` with its walk cache and table frames, the line
caches), each touch tagged by its operation and class, and folds the path's counters per
tag into :class:`OpEvent` per operation (:func:`op_events`). The events are priced through
:mod:`kmm.timing` (the README's "Time model"; :func:`price_ops`): the measured operations of
one policy are a run on one core, whose counts (:func:`run_counts`) and the ``background``
load of the cores not simulated load the memory latency (``dram_idle_ns`` at idle, the
calibrated loaded-latency curve, solved at the fixed point of latency and time). Cycles per
operation (:func:`op_cycles`) = instructions x ``cpi_base`` + L1 TLB misses x
``l2_tlb_hit_cycles`` + every walk's descriptor reads at the latency of the level that
served them (dependent, charged in full) + the lines of each data touch at their level's
latency over two overlaps on an AmpereOne-class core (:func:`kmm.timing.ampereone_core`:
``ampereone_outstanding``, ``ampereone_window``): the first line of a touch over the run's
overlap of independent misses, ``MLP = min(outstanding, max(1, misses per instruction x
window))`` (:func:`kmm.timing.mlp_eff`, every data line counted), its further, streamed
lines, independent of each other within one reorder window, over ``min(outstanding, lines
per touch)`` (:func:`kmm.timing.stream_overlap`; lines per touch of an operation:
:func:`stream_lines_per_touch`), never less than the run's ``MLP``. The loaded latency's
fixed point sees every line's traffic.
Instruction lines are not simulated in the line caches (``cpi_base`` covers instruction
supply); instruction fetches do go through the TLBs.

- Kernel TLB MPKI: walks (L2 TLB misses) of kernel-mode touches per 1000 kernel
  instructions, as Arm's ``DTLB_WALK``/``ITLB_WALK`` per kilo-instruction metrics; the L1
  refill rate is reported beside it.
- Throughput: operations per second of one core (dm-crypt IOPS, read bandwidth); memcached's
  is the closed loop's (:func:`closed_loop`: the worker's connections, one request
  outstanding each, exponential think time, service times drawn from the simulated
  requests); P99 comes from the same loop, so B3 and B4 share one operating point.
- B6 compares rodata=full+BBML2 with rodata=on; its MPKI ratio uses rodata=on's MPKI floored
  at one miss per measured window, and is evaluated only when each policy makes at least
  :data:`B6_MIN_WALKS` kernel walks in that window (else the claim is not evaluated).
- Every ``assumed`` parameter of params/bbml2_perf.yaml is swept jointly
  (:func:`joint_sweep`, a Latin hypercube) and one at a time around the published point
  (:func:`swing_sweep`, the swings that decide "decided by"); each claim is recorded with
  its values over both and with its :func:`replicates` (two more seeds, and the published
  run cut at half its measured operations) for the convergence check.

Trace-driven workloads (the default, ``workload_source = "trace"``)
--------------------------------------------------------------------
Each benchmark can instead be driven by the arm64 kernel trace shipped for it
(:data:`CAPTURES`: ``memcached.kmmt``, ``dmcrypt.kmmt``, ``pagecache.kmmt``, captured in a
1 GiB, 2-vCPU VM). :func:`capture_window` groups the references into touches
(:func:`group_touches`) and cuts the window into the benchmark's operations by instructions
retired; :func:`placed_capture` places it in the modelled machine. References outside the
linear map keep the captured footprint and order. A captured linear-map page of which the
window touches at least :data:`DATA_PAGE_LINES` lines is a data page: pages from the
allocator's runs over all RAM, and on each repetition of the window a share ``fresh_data``
of them new (``trace_data_fresh``, assumed and swept: a 256 GB machine streaming 100 GB
touches new pages where the VM read its 4 MiB file again). Other linear-map pages keep their
captured 2 MiB neighbourhood, placed at random blocks of the runtime window. One warm-up
window, then ``trace_windows`` measured repetitions.

Prefetch, stores, CPUs (:class:`MemorySpec`)
--------------------------------------------
A per-CPU stream prefetcher (:func:`stream_prefetch_kernel`) whose streams stop at every
4 KiB page, at the translation's size, or never (:class:`Prefetch`); stores of whole lines
that read nothing (write streaming mode, ``DC ZVA``); and several CPUs per dm-crypt block,
each with its own TLBs and private caches. With all three off, the only policy-dependent cost
is translation and B7/B8 declare the basis ``not-modelled`` (:func:`claim_basis`).

Not modelled: kernel activity outside the benchmark paths (timers, scheduler, other
softirqs), other cores' shootdowns and coherence traffic.
"""
from ..bbml2.model import (build_linear_map, LinearMapPolicy as Policy, MemoryMap, POLICY_NAMES)
from .model import (_kernel_table, CacheSpec, CHUNK_BYTES, closed_loop, CostSpec, GiB,
    IMAGE_OFFSET, KERNEL_VA_BASE, KernelLayout, KiB, Kind, Leaves, LINE_BYTES, LINES_PER_CHUNK,
    MemorySpec, memory_classes, MiB, module_alias_ranges, MODULES_BACKING_PA, MODULES_OFFSET, N_CLASSES, op_cycles, op_events,
    op_touches, OpEvent, OpPricing, OpTouches, path_config, POLICIES, price_ops, run_counts, stream_lines_per_touch, Prefetch, POLICY_LABELS, QueueResult, Region,
    simulate_events, STREAM_STORE_LINES, STRUCT_PAGE_BYTES, think_for_utilisation, tlb_outcomes, TlbSpec, trace_leaves,
    translation_cycles, USER_ASID, USER_BACKING_PA, USER_VA_BASE, VMALLOC_BACKING_PA,
    VMALLOC_OFFSET, VMEMMAP_BACKING_PA, Workload)
from .kernels import (closed_loop_kernel, group_touches_kernel, path_ops_kernel,
    split_streams, stream_prefetch_kernel)
from .workload import (_Touches, BlockIOShape, Capture, capture_window, CAPTURES,
    DATA_PAGE_LINES, group_touches, load_capture, placed_capture, TraceDrivenShape, dmcrypt_trace, memcached_trace, MemcachedShape,
    MODULE_AREA_BYTES, page_runs, scatter_blocks, seqread_trace, slab_objects, Trace,
    workload_trace)
from .study import (_EVENT_CACHE, _PLACED_CACHE, ASSUMED, assumed_specs, CHARTS, CHOICES, evidence, STUDY, check_choice_int, check_params, CLAIM_COLUMNS,
    b6_resolved, b6_value, B6_MIN_WALKS, claim_basis, CORE_KEYS, placed_trace, PlacedTrace, claim_values, cost_spec, DEFAULTS, footprint_comparison, MECHANISM_SETTINGS,
    mechanism_contributions, memory_mechanisms_on, memory_spec, trace_shape, WORKLOAD_SOURCES, dominant_parameter, evaluate, EVENT_KEYS, event_keys, explanations,
    first_half, granule_frame, joint_sweep, memcached_queue, params_from, params_path, policy_metrics,
    PolicyEvents, priced_events, relevant, replicates, results_frame, run_point, sensitivity,
    swing_sweep, sweep_records, table_summary, trace_summary, utilisation_curve, warmup_ops,
    workload_events, WORKLOAD_CLAIMS)
