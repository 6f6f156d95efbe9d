"""bbml2_perf: the access streams and traces the model runs.

Part of :mod:`kmm.mech.bbml2_perf`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...config import check_float, check_int
from ...errors import ConfigError
from .model import (CHUNK_BYTES, GiB, IMAGE_OFFSET, KERNEL_VA_BASE, KernelLayout, KiB, Kind,
    LINE_BYTES, LINES_PER_CHUNK, MiB, MODULES_BACKING_PA, MODULES_OFFSET, Region, USER_BACKING_PA,
    STRUCT_PAGE_BYTES, USER_VA_BASE, VMALLOC_BACKING_PA, VMALLOC_OFFSET, VMEMMAP_BACKING_PA,
    Workload)

# ---------------------------------------------------------------------------------------
# traces: touches of benchmark-shaped operations
# ---------------------------------------------------------------------------------------
class Trace(NamedTuple):
    """Touches of ``n_ops`` operations, in program order.

    ``va`` uint64 VA of the first byte touched; ``pa`` int64 its physical address (nominal
    outside the linear map and the image); ``lines`` int16 consecutive 64-byte lines touched
    from there (all inside one 4 KiB page); ``kind`` uint8 :class:`Kind`; ``region`` uint8
    :class:`Region`; ``el1`` bool (kernel-mode access); ``op`` int32 operation index.
    Per operation: ``instructions`` and ``el1_instructions`` (float64). ``cpu`` (uint8 per
    touch, or None: all on one CPU) is the CPU that made the touch.
    """

    va: np.ndarray
    pa: np.ndarray
    lines: np.ndarray
    kind: np.ndarray
    region: np.ndarray
    el1: np.ndarray
    op: np.ndarray
    instructions: np.ndarray
    el1_instructions: np.ndarray
    cpu: np.ndarray | None = None

    @property
    def n_ops(self) -> int:
        return int(self.instructions.shape[0])

    @property
    def n_lines(self) -> int:
        return int(self.lines.sum())


class _Touches:
    """Accumulates one column per step (one value per op, or a scalar) and interleaves the
    steps of each op in step order. A step whose ``lines`` is 0 for an op is dropped."""

    def __init__(self, layout: KernelLayout, n_ops: int):
        self.layout = layout
        self.n = n_ops
        self.steps: list[tuple] = []
        self.cpu = 0          # the CPU making the steps added from now on

    def _add(self, va, pa, lines, kind, region, el1):
        n = self.n
        va = np.broadcast_to(np.asarray(va, dtype=np.uint64), (n,))
        pa = np.broadcast_to(np.asarray(pa, dtype=np.int64), (n,))
        lines = np.broadcast_to(np.asarray(lines, dtype=np.int16), (n,))
        if np.any((lines < 0) | (lines > LINES_PER_CHUNK)):
            raise ValueError("a touch spans 0..64 lines of one page")
        first = (pa % CHUNK_BYTES) // LINE_BYTES
        if np.any((lines > 0) & (first + lines > LINES_PER_CHUNK)):
            raise ValueError("a touch crosses a page boundary")
        self.steps.append((va, pa, lines, int(kind), int(region), bool(el1), self.cpu))

    # ---- one helper per region: addresses in, both VA and PA out ---------------------
    def linear(self, pa, lines, kind, el1=True):
        """Bytes at physical ``pa`` through the linear map; a run crossing into the next
        page is split into two touches."""
        pa = np.asarray(pa, dtype=np.int64)
        lines = np.broadcast_to(np.asarray(lines, dtype=np.int64), np.broadcast(pa, 0).shape)
        first = (pa % CHUNK_BYTES) // LINE_BYTES
        head = np.minimum(lines, LINES_PER_CHUNK - first)
        pa_line = pa - pa % LINE_BYTES
        self._add(self.layout.linear_va(pa_line), pa_line, head, kind, Region.LINEAR, el1)
        tail = lines - head
        if np.any(tail > 0):
            nxt = pa - pa % CHUNK_BYTES + CHUNK_BYTES
            self._add(self.layout.linear_va(nxt), nxt, tail, kind, Region.LINEAR, el1)

    def struct_page(self, pa, lines=1, kind=Kind.STORE):
        va = self.layout.vmemmap_va(pa)
        lo, _ = self.layout.vmemmap_span()
        bpa = (va - np.uint64(lo)).astype(np.int64) + VMEMMAP_BACKING_PA
        va = va - va % np.uint64(LINE_BYTES)
        bpa = bpa - bpa % LINE_BYTES
        self._add(va, bpa, lines, kind, Region.VMEMMAP, True)

    def kva(self, region: Region, offset, lines, kind, el1=True):
        """Bytes at ``offset`` inside a region mapped the same under every policy."""
        base, backing = {Region.MODULES: (MODULES_OFFSET, MODULES_BACKING_PA),
                         Region.VMALLOC: (VMALLOC_OFFSET, VMALLOC_BACKING_PA),
                         Region.KTEXT: (IMAGE_OFFSET, self.layout.ram_base_bytes
                                        + self.layout.image_pa_offset_bytes)}[region]
        off = np.asarray(offset, dtype=np.int64)
        off = off - off % LINE_BYTES
        self._add(np.uint64(KERNEL_VA_BASE + base) + off.astype(np.uint64), backing + off,
                  lines, kind, region, el1)

    def user(self, offset, lines, kind, el1):
        off = np.asarray(offset, dtype=np.int64)
        off = off - off % LINE_BYTES
        self._add(np.uint64(USER_VA_BASE) + off.astype(np.uint64), USER_BACKING_PA + off,
                  lines, kind, Region.USER, el1)

    def build(self, instructions, el1_instructions) -> Trace:
        k = len(self.steps)
        n = self.n
        cols = [np.stack([s[i] for s in self.steps], axis=1).ravel() for i in range(3)]
        kind = np.tile(np.array([s[3] for s in self.steps], np.uint8), n)
        region = np.tile(np.array([s[4] for s in self.steps], np.uint8), n)
        el1 = np.tile(np.array([s[5] for s in self.steps], np.bool_), n)
        cpu = np.tile(np.array([s[6] for s in self.steps], np.uint8), n)
        op = np.repeat(np.arange(n, dtype=np.int32), k)
        keep = cols[2] > 0
        return Trace(va=cols[0][keep], pa=cols[1][keep], lines=cols[2][keep], kind=kind[keep],
                     region=region[keep], el1=el1[keep], op=op[keep],
                     instructions=np.broadcast_to(np.asarray(instructions, np.float64),
                                                  (n,)).copy(),
                     el1_instructions=np.broadcast_to(np.asarray(el1_instructions, np.float64),
                                                      (n,)).copy(), cpu=cpu[keep])


def scatter_blocks(rng: np.random.Generator, n: int, block_bytes: int, lo_bytes: int,
                   window_bytes: int) -> np.ndarray:
    """Physical addresses of ``n`` distinct ``block_bytes``-aligned blocks drawn uniformly
    from ``[lo_bytes, lo_bytes + window_bytes)`` (slab and page-pool pages of a kernel whose
    allocations come from that window)."""
    slots = window_bytes // block_bytes
    if n > slots:
        raise ConfigError(f"{n} blocks of {block_bytes} B do not fit a window of "
                          f"{window_bytes} B", "kernel_spread_bytes")
    first = -(-lo_bytes // block_bytes)
    idx = rng.choice(slots, size=n, replace=False) if n else np.zeros(0, np.int64)
    return (first + idx.astype(np.int64)) * block_bytes


def page_runs(rng: np.random.Generator, n_pages: int, run_pages: int, lo_bytes: int,
              hi_bytes: int, page_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Physical addresses of ``n_pages`` pages handed out in allocation order as runs of
    ``run_pages`` physically contiguous pages, each run at a distinct random run-aligned
    place in ``[lo_bytes, hi_bytes)`` (the buddy allocator splitting free blocks of that
    order: mm/page_alloc.c ``expand``)."""
    check_int("run_pages", run_pages, lo=1)
    runs = -(-n_pages // run_pages)
    starts = scatter_blocks(rng, runs, run_pages * page_bytes, lo_bytes, hi_bytes - lo_bytes)
    pages = (starts[:, None] + page_bytes * np.arange(run_pages, dtype=np.int64)[None, :]).ravel()
    return pages[:n_pages]


def slab_objects(rng: np.random.Generator, n_objs: int, obj_bytes: int, slab_order: int,
                 lo_bytes: int, window_bytes: int, page_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """Physical addresses of ``n_objs`` objects of a slab cache, packed in allocation order
    into slabs of ``2**slab_order`` 4 KiB pages (one page when pages are larger) that sit at
    random in the window (mm/slub.c: objects of one slab are consecutive, ``oo_objects``)."""
    slab_bytes = max(CHUNK_BYTES << slab_order, page_bytes)
    per = slab_bytes // obj_bytes
    if per < 1:
        raise ConfigError(f"a {obj_bytes} B object does not fit an order-{slab_order} slab",
                          "obj_bytes")
    slabs = scatter_blocks(rng, -(-n_objs // per), slab_bytes, lo_bytes, window_bytes)
    j = np.arange(n_objs, dtype=np.int64)
    return slabs[j // per] + (j % per) * obj_bytes


def _granules(rng, n, span_bytes):
    """``n`` distinct 4 KiB granules (byte offsets) of a ``span_bytes`` code region."""
    return np.sort(rng.choice(span_bytes // CHUNK_BYTES, size=n, replace=False)).astype(np.int64) * CHUNK_BYTES


def _fetch(t: _Touches, region: Region, granules: np.ndarray, lines: int, el1: bool = True):
    for g in granules:
        if region == Region.USER:
            t.user(int(g), lines, Kind.IFETCH, el1)
        else:
            t.kva(region, int(g), lines, Kind.IFETCH, el1)


def _lines(nbytes) -> np.ndarray:
    return -(-np.asarray(nbytes, dtype=np.int64) // LINE_BYTES)


# ---- memcached --------------------------------------------------------------------------
@dataclass(frozen=True)
class MemcachedShape:
    """One memcached worker core serving memtier_benchmark (module docstring).

    Parameters
    ----------
    connections : connections served by the worker (memtier 4 x 50 over memcached's 4
        workers)
    get_fraction : share of GETs (memtier ``--ratio 1:10``)
    value_bytes : item value size (memtier ``-d 32``)
    item_memory_bytes : memcached item memory (``-m 64``)
    hash_bytes : hash table (2^20 8-byte buckets)
    rx_ring_pages : ``page_pool`` pages cycling through the receive ring (two 2 KiB
        buffers per page)
    kernel_spread_bytes : physical window the kernel's slab and network pages come from
    instructions_per_op : instructions per request, kernel and user
    el1_instruction_fraction : share of them executed in the kernel
    kernel_text_granules, module_text_granules, user_text_granules : 4 KiB code granules
        each request fetches from
    """

    connections: int = 50
    get_fraction: float = 10 / 11
    value_bytes: int = 32
    item_memory_bytes: int = 64 * MiB
    hash_bytes: int = 8 * MiB
    rx_ring_pages: int = 512
    kernel_spread_bytes: int = 4 * GiB
    instructions_per_op: int = 20_000
    el1_instruction_fraction: float = 0.75
    kernel_text_granules: int = 40
    module_text_granules: int = 12
    user_text_granules: int = 10

    def __post_init__(self):
        check_int("connections", self.connections, lo=1, hi=1 << 20)
        check_float("get_fraction", self.get_fraction, lo=0.0, hi=1.0)
        check_int("value_bytes", self.value_bytes, lo=1, hi=CHUNK_BYTES // 2)
        check_int("item_memory_bytes", self.item_memory_bytes, lo=MiB)
        check_int("hash_bytes", self.hash_bytes, lo=CHUNK_BYTES)
        check_int("rx_ring_pages", self.rx_ring_pages, lo=1)
        check_int("kernel_spread_bytes", self.kernel_spread_bytes, lo=64 * MiB)
        check_int("instructions_per_op", self.instructions_per_op, lo=1)
        check_float("el1_instruction_fraction", self.el1_instruction_fraction, lo=0.0, hi=1.0)
        check_int("kernel_text_granules", self.kernel_text_granules, lo=0, hi=4096)
        check_int("module_text_granules", self.module_text_granules, lo=0, hi=512)
        check_int("user_text_granules", self.user_text_granules, lo=0, hi=512)


# object sizes (bytes) and slab orders of the caches a request touches (slabinfo of a 6.x
# arm64 kernel: TCP 2368 B order 3, sock_inode_cache 704 B order 2, filp 256 B order 1,
# eventpoll_epi 128 B order 0, skbuff_head_cache 256 B, skbuff_fclone_cache 512 B)
_TCP_SOCK = (2368, 3)
_SOCK_INODE = (704, 2)
_FILP = (256, 1)
_EPITEM = (128, 0)
_RING_ENTRIES = 1024
_RING_ENTRY_BYTES = 64
_FRAG_BYTES = 32 * KiB   # SKB_FRAG_PAGE_ORDER: task page fragments of 32 KiB (or a page)
_RX_BUF_BYTES = 2 * KiB  # receive buffer per packet in a page_pool page
_HEADER_BYTES = 66       # Ethernet + IPv4 + TCP with timestamps
#: bytes of the module area and of the vmalloc area the model maps (text granules of the
#: NIC, dm-crypt, brd and XFS modules; thread stacks and the doorbell)
MODULE_AREA_BYTES = 256 * KiB


def memcached_trace(shape: MemcachedShape, layout: KernelLayout, n_ops: int,
                    seed: int) -> Trace:
    """Touches of ``n_ops`` memcached requests served by one worker core (module docstring).

    Requests arrive from connections drawn uniformly (closed-loop clients, one outstanding
    request each, served in arrival order).
    """
    check_int("n_ops", n_ops, lo=1)
    rng = np.random.default_rng(seed)
    t = _Touches(layout, n_ops)
    win_lo, win_hi = layout.runtime_window(shape.kernel_spread_bytes)
    win = win_hi - win_lo
    pg = layout.page_bytes
    C = shape.connections
    tcp = slab_objects(rng, C, *_TCP_SOCK, win_lo, win, pg)
    inode = slab_objects(rng, C, *_SOCK_INODE, win_lo, win, pg)
    filp = slab_objects(rng, C, *_FILP, win_lo, win, pg)
    epi = slab_objects(rng, C, *_EPITEM, win_lo, win, pg)
    hot = scatter_blocks(rng, 8, pg, win_lo, win)                  # percpu, task, eventpoll,
    skb = slab_objects(rng, 32, 256, 0, win_lo, win, pg)           # dst, neigh, qdisc...
    fclone = slab_objects(rng, 32, 512, 0, win_lo, win, pg)
    ring_bytes = max(_RING_ENTRIES * _RING_ENTRY_BYTES, pg)
    rings = scatter_blocks(rng, 3, ring_bytes, win_lo, win)        # rx cq, tx, tx cq
    # receive buffers: 2 KiB each, as many per page_pool page as fit; the ring holds the
    # same bytes whatever the page size (rx_ring_pages counts 4 KiB of buffers)
    per_rx_page = pg // _RX_BUF_BYTES
    n_bufs = shape.rx_ring_pages * (CHUNK_BYTES // _RX_BUF_BYTES)
    rx_pages = scatter_blocks(rng, -(-n_bufs // per_rx_page), pg, win_lo, win)
    conn = rng.integers(0, C, n_ops)
    is_get = rng.random(n_ops) < shape.get_fraction
    req_bytes = np.where(is_get, 30, 40 + shape.value_bytes)
    resp_bytes = np.where(is_get, 40 + shape.value_bytes, 8)
    # task page fragment: responses packed sequentially into order-3 pages
    frag_bytes = _lines(resp_bytes) * LINE_BYTES
    frag_end = np.cumsum(frag_bytes)
    frag_unit = max(_FRAG_BYTES, pg)
    frag_chunk = (frag_end - frag_bytes) // frag_unit
    frag_off = (frag_end - frag_bytes) % frag_unit
    # a response never straddles a fragment page: skb_page_frag_refill starts a new one
    over = frag_off + frag_bytes > frag_unit
    frag_off = np.where(over, 0, frag_off)
    frag_chunk = frag_chunk + over
    chunks = scatter_blocks(rng, int(frag_chunk.max()) + 1, frag_unit, win_lo, win)
    frag = chunks[frag_chunk] + frag_off
    slot = np.arange(n_ops, dtype=np.int64) % n_bufs
    rxbuf = rx_pages[slot // per_rx_page] + (slot % per_rx_page) * _RX_BUF_BYTES
    ring_slot = (np.arange(n_ops, dtype=np.int64) % _RING_ENTRIES) * _RING_ENTRY_BYTES
    pool = np.arange(n_ops) % 32
    # user memory layout: conn structs, per-connection read buffers, events, hash, items
    u_conn = 0
    u_rbuf = u_conn + C * 512
    u_events = -(-(u_rbuf + C * 2048) // CHUNK_BYTES) * CHUNK_BYTES
    u_hash = u_events + CHUNK_BYTES
    u_items = u_hash + shape.hash_bytes
    u_text = u_items + shape.item_memory_bytes
    bucket = u_hash + rng.integers(0, shape.hash_bytes // 8, n_ops) * 8
    item_chunk = 96 if shape.value_bytes <= 32 else -(-(56 + shape.value_bytes) // 64) * 64
    per_chunk = CHUNK_BYTES // item_chunk
    n_items = shape.item_memory_bytes // CHUNK_BYTES * per_chunk
    it = rng.integers(0, n_items, n_ops)
    item = u_items + (it // per_chunk) * CHUNK_BYTES + (it % per_chunk) * item_chunk
    item_lines = _lines(item % LINE_BYTES + item_chunk)
    item_lines = np.minimum(item_lines, LINES_PER_CHUNK - (item % CHUNK_BYTES) // LINE_BYTES)
    ktext = _granules(rng, shape.kernel_text_granules, layout.image_text_bytes)
    mtext = _granules(rng, shape.module_text_granules, MODULE_AREA_BYTES)
    utext = u_text + _granules(rng, shape.user_text_granules, 256 * CHUNK_BYTES)
    kq = np.array_split(ktext, 4)
    mq = np.array_split(mtext, 2)
    stack_top = layout.stack_bytes - CHUNK_BYTES

    # receive softirq
    _fetch(t, Region.KTEXT, kq[0], 16)
    _fetch(t, Region.MODULES, mq[0], 16)
    t.linear(rings[0] + ring_slot, 1, Kind.LOAD)
    t.linear(rxbuf, _lines(_HEADER_BYTES + req_bytes), Kind.LOAD)
    t.struct_page(rxbuf, 1, Kind.STORE)
    t.linear(skb[pool], 4, Kind.STORE)
    t.linear(tcp[conn], 4, Kind.STORE)
    t.linear(tcp[conn] + 1280, 4, Kind.STORE)
    t.linear(epi[conn], 1, Kind.LOAD)
    t.linear(hot[0], 2, Kind.STORE)
    # epoll_wait + read
    _fetch(t, Region.KTEXT, kq[1], 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.linear(hot[1], 2, Kind.STORE)
    t.user(u_events, 1, Kind.STORE, el1=True)
    t.linear(filp[conn], 1, Kind.LOAD)
    t.linear(inode[conn], 2, Kind.LOAD)
    t.linear(tcp[conn], 4, Kind.STORE)
    t.linear(skb[pool], 4, Kind.LOAD)
    t.linear(rxbuf + _HEADER_BYTES, _lines(req_bytes), Kind.LOAD)
    t.user(u_rbuf + conn * 2048, _lines(req_bytes), Kind.STORE, el1=True)
    t.struct_page(rxbuf, 1, Kind.STORE)
    # memcached (EL0)
    _fetch(t, Region.USER, utext, 16, el1=False)
    t.user(u_conn + conn * 512, 2, Kind.STORE, el1=False)
    t.user(u_rbuf + conn * 2048, _lines(req_bytes), Kind.LOAD, el1=False)
    t.user(bucket, 1, Kind.LOAD, el1=False)
    t.user(item, np.where(is_get, item_lines, 0), Kind.LOAD, el1=False)
    t.user(item, np.where(is_get, 0, item_lines), Kind.STORE, el1=False)
    # sendmsg
    _fetch(t, Region.KTEXT, kq[2], 16)
    _fetch(t, Region.MODULES, mq[1], 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.kva(Region.VMALLOC, stack_top - CHUNK_BYTES, 4, Kind.STORE)
    t.linear(filp[conn], 1, Kind.LOAD)
    t.linear(inode[conn], 2, Kind.LOAD)
    t.linear(tcp[conn], 4, Kind.STORE)
    t.linear(tcp[conn] + 1280, 4, Kind.STORE)
    t.linear(fclone[pool], 8, Kind.STORE)
    t.user(np.where(is_get, item, u_rbuf + conn * 2048), np.where(is_get, item_lines, 1),
           Kind.LOAD, el1=True)
    t.linear(frag, _lines(resp_bytes), Kind.STORE)
    t.linear(hot[2], 2, Kind.LOAD)
    t.linear(hot[3], 2, Kind.STORE)
    t.linear(hot[4], 1, Kind.STORE)
    t.linear(rings[1] + ring_slot, 1, Kind.STORE)
    t.kva(Region.VMALLOC, 2 * layout.stack_bytes, 1, Kind.STORE)      # doorbell (ioremap)
    # transmit completion
    _fetch(t, Region.KTEXT, kq[3], 16)
    t.linear(rings[2] + ring_slot, 1, Kind.LOAD)
    t.linear(fclone[pool], 2, Kind.STORE)
    t.struct_page(frag, 1, Kind.STORE)
    t.linear(tcp[conn], 2, Kind.STORE)
    n_ins = float(shape.instructions_per_op)
    return t.build(n_ins, n_ins * shape.el1_instruction_fraction)


# ---- dm-crypt and sequential read -------------------------------------------------------
@dataclass(frozen=True)
class BlockIOShape:
    """A 4 KiB-block I/O benchmark on one core (module docstring).

    Parameters
    ----------
    run_pages : physically contiguous pages per allocator run (page cache, brd)
    kernel_spread_bytes : window of the kernel's slab pages (xarray nodes, buffer heads)
    instructions_per_op : instructions per 4 KiB operation (all in the kernel but the
        benchmark's loop)
    el1_instruction_fraction : share executed in the kernel
    kernel_text_granules, module_text_granules : code granules per operation
    read_bytes : bytes per ``read`` (sequential read only)
    cpus : CPUs sharing one dm-crypt block: 1 (all on the writer's), 2 (writeback and
        kcryptd on a second CPU), 3 (brd's copy by dm-crypt's write thread on a third)
    """

    run_pages: int = 16
    kernel_spread_bytes: int = 4 * GiB
    instructions_per_op: int = 20_000
    el1_instruction_fraction: float = 0.97
    kernel_text_granules: int = 40
    module_text_granules: int = 8
    read_bytes: int = 4 * KiB
    cpus: int = 1

    def __post_init__(self):
        check_int("run_pages", self.run_pages, lo=1, hi=1 << 18)
        check_int("kernel_spread_bytes", self.kernel_spread_bytes, lo=64 * MiB)
        check_int("instructions_per_op", self.instructions_per_op, lo=1)
        check_float("el1_instruction_fraction", self.el1_instruction_fraction, lo=0.0, hi=1.0)
        check_int("kernel_text_granules", self.kernel_text_granules, lo=0, hi=4096)
        check_int("module_text_granules", self.module_text_granules, lo=0, hi=512)
        check_int("read_bytes", self.read_bytes, lo=CHUNK_BYTES, hi=1 * MiB)
        check_int("cpus", self.cpus, lo=1, hi=3)
        if self.read_bytes % CHUNK_BYTES:
            raise ConfigError("read_bytes must be a multiple of 4 KiB", "read_bytes")


_XA_NODE = (576, 2)      # radix_tree_node: 64 slots
_BUFFER_HEAD = (104, 0)
_BOUNCE_POOL = 2         # mempool/pcp pages reused LIFO by crypt_alloc_buffer


def _windows(layout: KernelLayout, spread_bytes: int) -> tuple[int, int, int]:
    """(start of the runtime kernel window, its size, end of RAM): page-cache and ramdisk
    pages come from anywhere above the boot window, slab pages from the runtime window."""
    lo, hi = layout.runtime_window(spread_bytes)
    return lo, hi - lo, layout.ram_base_bytes + layout.ram_bytes


def dmcrypt_trace(shape: BlockIOShape, layout: KernelLayout, n_ops: int, seed: int) -> Trace:
    """Touches of ``n_ops`` 4 KiB buffered writes through ext4 on dm-crypt on brd, each
    charged with the writeback of a block written long before (module docstring). With pages
    larger than 4 KiB, consecutive blocks share a page-cache page and a ramdisk page, and
    brd zeroes a whole page when its first block arrives."""
    check_int("n_ops", n_ops, lo=1)
    rng = np.random.default_rng(seed)
    t = _Touches(layout, n_ops)
    lo, win, hi = _windows(layout, shape.kernel_spread_bytes)
    pg = layout.page_bytes
    k = pg // CHUNK_BYTES                  # 4 KiB blocks per page
    i = np.arange(n_ops, dtype=np.int64)
    n_pages = -(-n_ops // k)
    # allocation order: the pages being written back were allocated before the trace
    # (writeback lags far behind the writer), then the writer's page-cache pages and brd's
    # pages, interleaved
    pages = page_runs(rng, 3 * n_pages, shape.run_pages, lo, hi, pg)
    wb_page = pages[:n_pages]
    new_page = pages[n_pages::2]
    brd_page = pages[n_pages + 1::2]
    off = (i % k) * CHUNK_BYTES
    new_pc = new_page[i // k] + off
    wb_pc = wb_page[i // k] + off
    brd = brd_page[i // k] + off
    bounce = scatter_blocks(rng, _BOUNCE_POOL, pg, lo, win)[i % _BOUNCE_POOL]
    hot = scatter_blocks(rng, 6, pg, lo, win)
    n_nodes = n_pages // 64 + 2
    pc_nodes = slab_objects(rng, n_nodes, *_XA_NODE, lo, win, pg)
    wb_nodes = slab_objects(rng, n_nodes, *_XA_NODE, lo, win, pg)
    brd_nodes = slab_objects(rng, n_nodes, *_XA_NODE, lo, win, pg)
    bh = slab_objects(rng, n_ops, *_BUFFER_HEAD, lo, win, pg)
    ktext = _granules(rng, shape.kernel_text_granules, layout.image_text_bytes)
    mtext = _granules(rng, shape.module_text_granules, MODULE_AREA_BYTES)
    kq = np.array_split(ktext, 3)
    mq = np.array_split(mtext, 2)
    stack_top = layout.stack_bytes - CHUNK_BYTES
    fio_buf = 0
    node = (i // k) // 64
    # the writer: write(2) of 4 KiB into the page cache
    _fetch(t, Region.KTEXT, kq[0], 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.linear(hot[0], 2, Kind.LOAD)                       # file, inode
    t.linear(hot[1], 2, Kind.STORE)                      # ext4 inode info, jbd2 handle
    t.linear(pc_nodes[node], 2, Kind.STORE)
    t.struct_page(new_pc, 1, Kind.STORE)
    t.user(fio_buf, LINES_PER_CHUNK, Kind.LOAD, el1=True)
    t.linear(new_pc, LINES_PER_CHUNK, Kind.STORE)
    t.linear(bh, 2, Kind.STORE)
    # writeback of an old block: dm-crypt encrypts it into a bounce page
    t.cpu = min(1, shape.cpus - 1)
    _fetch(t, Region.KTEXT, kq[1], 16)
    _fetch(t, Region.MODULES, mq[0], 16)
    t.kva(Region.VMALLOC, layout.stack_bytes + stack_top, 8, Kind.STORE)   # kworker stack
    t.struct_page(wb_pc, 1, Kind.STORE)
    t.linear(wb_nodes[node], 1, Kind.STORE)
    t.linear(hot[2], 4, Kind.STORE)                      # bio, dm_crypt_io, request
    t.struct_page(bounce, 1, Kind.STORE)
    t.linear(wb_pc, LINES_PER_CHUNK, Kind.LOAD)
    t.linear(bounce, LINES_PER_CHUNK, Kind.STORE)
    # brd: a new page is allocated and zeroed (__GFP_ZERO) when its first block arrives,
    # then the bounce page is copied in (by dm-crypt's write thread)
    t.cpu = min(2, shape.cpus - 1)
    _fetch(t, Region.KTEXT, kq[2], 16)
    _fetch(t, Region.MODULES, mq[1], 16)
    t.linear(brd_nodes[node], 2, Kind.STORE)
    t.struct_page(brd, 1, Kind.STORE)
    first = (i % k) == 0
    for j in range(k):
        t.linear(brd_page[i // k] + j * CHUNK_BYTES, np.where(first, LINES_PER_CHUNK, 0),
                 Kind.STORE)
    t.linear(bounce, LINES_PER_CHUNK, Kind.LOAD)
    t.linear(brd, LINES_PER_CHUNK, Kind.STORE)
    # completion
    t.cpu = min(1, shape.cpus - 1)
    t.struct_page(bounce, 1, Kind.STORE)
    t.struct_page(wb_pc, 1, Kind.STORE)
    t.linear(hot[3], 2, Kind.STORE)
    n_ins = float(shape.instructions_per_op)
    return t.build(n_ins, n_ins * shape.el1_instruction_fraction)


def seqread_trace(shape: BlockIOShape, layout: KernelLayout, n_ops: int, seed: int) -> Trace:
    """Touches of ``n_ops`` sequential ``read`` calls of ``read_bytes`` from a cached file
    (module docstring); with pages larger than 4 KiB consecutive reads share a page."""
    check_int("n_ops", n_ops, lo=1)
    rng = np.random.default_rng(seed)
    t = _Touches(layout, n_ops)
    lo, win, hi = _windows(layout, shape.kernel_spread_bytes)
    pg = layout.page_bytes
    k = pg // CHUNK_BYTES
    per_op = shape.read_bytes // CHUNK_BYTES
    n_chunks = n_ops * per_op
    pages = page_runs(rng, -(-n_chunks // k), shape.run_pages, lo, hi, pg)
    nodes = slab_objects(rng, n_chunks // k // 64 + 2, *_XA_NODE, lo, win, pg)
    hot = scatter_blocks(rng, 4, pg, lo, win)
    ktext = _granules(rng, shape.kernel_text_granules, layout.image_text_bytes)
    mtext = _granules(rng, shape.module_text_granules, MODULE_AREA_BYTES)
    i = np.arange(n_ops, dtype=np.int64)
    stack_top = layout.stack_bytes - CHUNK_BYTES
    _fetch(t, Region.KTEXT, ktext, 16)
    _fetch(t, Region.MODULES, mtext, 16)
    t.kva(Region.VMALLOC, stack_top, 8, Kind.STORE)
    t.linear(hot[0], 2, Kind.LOAD)                       # file, inode
    t.linear(hot[1], 2, Kind.STORE)                      # xfs inode, readahead state
    for c in range(per_op):
        g = i * per_op + c
        pc = pages[g // k] + (g % k) * CHUNK_BYTES
        t.linear(nodes[g // k // 64], 1, Kind.LOAD)
        t.struct_page(pc, 1, Kind.STORE)
        t.linear(pc, LINES_PER_CHUNK, Kind.LOAD)
        t.user(c * CHUNK_BYTES, LINES_PER_CHUNK, Kind.STORE, el1=True)
    t.user(1 * MiB, 4, Kind.IFETCH, el1=False)           # xfs_io's loop
    n_ins = float(shape.instructions_per_op)
    return t.build(n_ins, n_ins * shape.el1_instruction_fraction)


def workload_trace(workload: Workload, shape, layout: KernelLayout, n_ops: int,
                   seed: int) -> Trace:
    """Dispatch to the trace generator of ``workload``."""
    workload = Workload(workload)
    if workload == Workload.MEMCACHED:
        if not isinstance(shape, MemcachedShape):
            raise ConfigError("memcached needs a MemcachedShape", "shape")
        return memcached_trace(shape, layout, n_ops, seed)
    if not isinstance(shape, BlockIOShape):
        raise ConfigError(f"{workload.name.lower()} needs a BlockIOShape", "shape")
    gen = dmcrypt_trace if workload == Workload.DMCRYPT else seqread_trace
    return gen(shape, layout, n_ops, seed)


# ---------------------------------------------------------------------------------------
# trace-driven workloads: the captured arm64 kernel traces (kmm/data/traces/)
# ---------------------------------------------------------------------------------------
#: Per workload: the shipped capture that drives it and the benchmark operations in one
#: capture window, read from the capture's own scenario (its manifest's ``work`` command):
#: memcached serves 40 requests (``kmmwork memcache 11211 40``); dm-crypt writes 512 KiB
#: (``kmmwork ddwrite /dev/dm-0 512``), 128 blocks of 4 KiB; the page-cache read reads a
#: 4 MiB file (``dd ... bs=1M count=4``), 1024 pages of 4 KiB.
CAPTURES = {Workload.MEMCACHED: ("memcached", 40, "memcache 11211 40"),
            Workload.DMCRYPT: ("dmcrypt", 128, "ddwrite /dev/dm-0 512"),
            Workload.SEQREAD: ("pagecache", 1024, "read /data/big")}

#: Capture region names -> the regions of this model (image sections are the kernel image;
#: per-CPU memory lives in the linear map on arm64, ``pcpu_embed_first_chunk``; stacks,
#: fixmap and I/O mappings are mapped with pages like vmalloc).
_CAPTURE_REGION = {"user": Region.USER, "text": Region.KTEXT, "rodata": Region.KTEXT,
                   "init": Region.KTEXT, "data": Region.KTEXT, "bss": Region.KTEXT,
                   "hyp": Region.KTEXT, "linear": Region.LINEAR, "percpu": Region.LINEAR,
                   "modules": Region.MODULES, "bpf": Region.MODULES,
                   "vmemmap": Region.VMEMMAP}

#: A captured linear-map page of which at least this many of its 64 lines are touched in
#: one window is a *data page* (page cache, bounce, ramdisk and copy buffers, copied
#: whole); the others are *object pages* (slab, per-CPU, xarray nodes, sk_buffs).
DATA_PAGE_LINES = 32
_BLOCK = 2 * MiB


class Capture(NamedTuple):
    """One capture window grouped into touches (:func:`group_touches`), before it is placed
    in the modelled machine: per touch the captured ``va`` (of its first line), ``pa`` (-1
    where unknown), ``lines``, ``kind``, ``region`` (model :class:`Region`), ``el1``,
    ``cpu`` and ``op`` (operation of the window, by instructions retired before it); per
    operation ``instructions`` and ``el1_instructions``; ``phys_offset`` of the VM's RAM and
    its ``vmemmap_start``."""

    va: np.ndarray
    pa: np.ndarray
    lines: np.ndarray
    kind: np.ndarray
    region: np.ndarray
    el1: np.ndarray
    cpu: np.ndarray
    op: np.ndarray
    instructions: np.ndarray
    el1_instructions: np.ndarray
    phys_offset: int
    vmemmap_start: int


def group_touches(line: np.ndarray, kind: np.ndarray, key: np.ndarray, open_streams: int = 4):
    """:func:`kernels.group_touches_kernel` with checked inputs."""
    from .kernels import group_touches_kernel
    check_int("open_streams", open_streams, lo=1, hi=64)
    return group_touches_kernel(np.ascontiguousarray(line, np.int64),
                                np.ascontiguousarray(kind, np.uint8),
                                np.ascontiguousarray(key, np.int64), open_streams)


def capture_window(trace, ops_per_window: int) -> Capture:
    """Group a :class:`kmm.kmmt.KernelTrace`'s references into touches and cut its window
    into ``ops_per_window`` operations of equal instruction counts (each 4-byte fetch is one
    instruction)."""
    check_int("ops_per_window", ops_per_window, lo=1)
    names = trace.region_names()
    code_region = np.full(256, int(Region.VMALLOC), np.uint8)
    for code, name in names.items():
        code_region[code] = int(_CAPTURE_REGION.get(name, Region.VMALLOC))
    va = trace.address
    region = code_region[trace.region]
    key = (trace.region.astype(np.int64) << 16) | (trace.el.astype(np.int64) << 8) \
        | trace.cpu.astype(np.int64)
    touch, first, n_lines = group_touches(va >> np.uint64(6), trace.kind, key)
    fetch = trace.kind == Kind.IFETCH
    ins_before = np.cumsum(fetch) - fetch
    n_ins = int(fetch.sum())
    if n_ins == 0:
        raise ConfigError("the capture has no instruction fetches", "trace")
    ref_op = np.minimum(ins_before * ops_per_window // n_ins, ops_per_window - 1)
    head = np.zeros(first.size, np.int64)
    head[touch[::-1]] = np.arange(va.size - 1, -1, -1)       # the reference opening each touch
    pa = trace.pa[head]
    pa = np.where(pa == np.uint64(0xFFFF_FFFF_FFFF_FFFF), -1,
                  (pa - (va[head] & np.uint64(LINE_BYTES - 1))).astype(np.int64))
    lay = trace.manifest.get("layout", {})
    return Capture(va=(first << 6).astype(np.uint64), pa=pa,
                   lines=np.where(trace.kind[head] == Kind.IFETCH, 0, n_lines).astype(np.int16),
                   kind=trace.kind[head].astype(np.uint8), region=region[head],
                   el1=trace.el[head] >= 1, cpu=trace.cpu[head].astype(np.uint8),
                   op=ref_op[head].astype(np.int64),
                   instructions=np.bincount(ref_op[fetch], minlength=ops_per_window)
                   .astype(np.float64),
                   el1_instructions=np.bincount(ref_op[fetch & (trace.el >= 1)],
                                                minlength=ops_per_window).astype(np.float64),
                   phys_offset=int(lay.get("phys_offset", "0x40000000"), 16),
                   vmemmap_start=int(lay.get("vmemmap", [["0xfffffc0000000000"]])[0][0], 16))


_CAPTURE_CACHE: dict = {}


def load_capture(workload: Workload) -> Capture:
    """The shipped capture of ``workload`` (:data:`CAPTURES`), grouped into touches (cached:
    the shipped files do not change while kmm runs)."""
    from ...engine import read_shipped_trace
    workload = Workload(workload)
    if workload not in _CAPTURE_CACHE:
        name, per_window, work = CAPTURES[workload]
        tr = read_shipped_trace(name)
        if work not in str(tr.manifest.get("scenario", {}).get("work", "")):
            raise ConfigError(f"{name}.kmmt does not run {work!r}: its operation count is "
                              "unknown", "trace")
        _CAPTURE_CACHE[workload] = capture_window(tr, per_window)
    return _CAPTURE_CACHE[workload]


@dataclass(frozen=True)
class TraceDrivenShape:
    """How a capture window is placed in the modelled machine (module docstring of
    :mod:`kmm.mech.bbml2_perf`, "Trace-driven workloads").

    Parameters
    ----------
    windows : repetitions of the capture window in one run
    fresh_data : share of the data pages that are new pages on each repetition (1: the
        benchmark streams through far more memory than the window touched, 0: the VM's
        working set repeats)
    run_pages : physically contiguous 4 KiB pages per allocator run of data pages
    kernel_spread_bytes : window of the object pages, above the boot window
    one_cpu : run every touch on CPU 0 (False: on the vCPU that made it, each vCPU a core
        with its own TLBs and private caches)
    """

    windows: int = 2
    fresh_data: float = 1.0
    run_pages: int = 32
    kernel_spread_bytes: int = 4 * GiB
    one_cpu: bool = True

    def __post_init__(self):
        check_int("windows", self.windows, lo=1, hi=10_000)
        check_float("fresh_data", self.fresh_data, lo=0.0, hi=1.0)
        check_int("run_pages", self.run_pages, lo=1, hi=1 << 18)
        check_int("kernel_spread_bytes", self.kernel_spread_bytes, lo=64 * MiB)


def _packed(va: np.ndarray) -> tuple[np.ndarray, int]:
    """Offsets of ``va`` with the distinct 2 MiB blocks it touches packed in address order
    (each offset inside its block kept), and the bytes the packed blocks span."""
    blk = va >> np.uint64(21)
    uniq, inv = np.unique(blk, return_inverse=True)
    return inv.astype(np.int64) * _BLOCK + (va & np.uint64(_BLOCK - 1)).astype(np.int64), \
        max(1, uniq.size) * _BLOCK


def placed_capture(workload: Workload, shape: TraceDrivenShape, layout: KernelLayout,
                   seed: int) -> tuple[Trace, dict]:
    """The capture of ``workload`` repeated ``shape.windows`` times in the modelled machine.

    References outside the linear map keep the captured footprint and order: each region's
    distinct 2 MiB blocks are packed in address order into the model's area for it (image,
    modules, vmalloc, user), offsets inside a block kept. Linear-map pages are placed by
    the stated rule: object pages keep their offset inside their captured 2 MiB block and
    each such block lands at a random block of the runtime window
    (``kernel_spread_bytes``), the same on every repetition; data pages get pages from
    :func:`page_runs` over all RAM above the boot window, in order of first touch, and on
    each later repetition a share ``fresh_data`` of them get new pages. A ``struct page``
    touch follows its page's placement; struct pages of memory the window does not touch
    through the linear map map the VM's RAM onto the bottom of the boot window.

    Returns the trace and the bytes of the image, modules and vmalloc areas it needs
    mapped (``{"image": ..., "modules": ..., "vmalloc": ...}``).
    """
    cap = load_capture(workload)
    rng = np.random.default_rng([seed, 24])
    reps = shape.windows
    per = cap.instructions.size
    n = cap.va.size
    va = np.zeros(n, np.uint64)
    pa = np.zeros(n, np.int64)
    spans = {}
    areas = {Region.KTEXT: ("image", IMAGE_OFFSET, layout.ram_base_bytes
                            + layout.image_pa_offset_bytes),
             Region.MODULES: ("modules", MODULES_OFFSET, MODULES_BACKING_PA),
             Region.VMALLOC: ("vmalloc", VMALLOC_OFFSET, VMALLOC_BACKING_PA)}
    for reg, (name, base, backing) in areas.items():
        m = cap.region == reg
        off, spans[name] = _packed(cap.va[m])
        va[m] = np.uint64(KERNEL_VA_BASE + base) + off.astype(np.uint64)
        pa[m] = backing + off
    m = cap.region == Region.USER
    off, _ = _packed(cap.va[m])
    va[m] = np.uint64(USER_VA_BASE) + off.astype(np.uint64)
    pa[m] = USER_BACKING_PA + off
    spans["image"] = max(spans["image"], layout.image_text_bytes)
    # linear-map pages: data pages and object pages
    lin = np.flatnonzero(cap.region == Region.LINEAR)
    if np.any(cap.pa[lin] < 0):
        raise ConfigError("a captured linear-map touch has no physical address", "trace")
    cap_page = cap.pa[lin] >> 12
    pages, page_of = np.unique(cap_page, return_inverse=True)
    n_l = cap.lines[lin].astype(np.int64)
    start = page_of * LINES_PER_CHUNK + (cap.pa[lin] % CHUNK_BYTES) // LINE_BYTES
    within = np.arange(n_l.sum()) - np.repeat(np.cumsum(n_l) - n_l, n_l)
    seen = np.unique(np.repeat(start, n_l) + within) // LINES_PER_CHUNK
    data = np.bincount(seen, minlength=pages.size) >= DATA_PAGE_LINES
    lo, win, hi = _windows(layout, shape.kernel_spread_bytes)
    new_page = np.zeros((reps, pages.size), np.int64)
    blocks, block_of = np.unique(pages[~data] * CHUNK_BYTES // _BLOCK, return_inverse=True)
    if blocks.size * _BLOCK > win:
        raise ConfigError("the kernel spread is smaller than the captured object pages",
                          "kernel_spread_bytes")
    at = scatter_blocks(rng, blocks.size, _BLOCK, lo, win)
    new_page[:, ~data] = at[block_of] + (pages[~data] * CHUNK_BYTES) % _BLOCK
    d_idx = np.flatnonzero(data)
    first_use = np.unique(page_of, return_index=True)[1]
    order = d_idx[np.argsort(first_use[d_idx], kind="stable")]
    fresh = np.ones(order.size, bool)
    for r in range(reps):
        if r:
            new_page[r, order] = new_page[r - 1, order]
            fresh = rng.random(order.size) < shape.fresh_data
        if fresh.any():
            new_page[r, order[fresh]] = page_runs(rng, int(fresh.sum()), shape.run_pages,
                                                  lo, hi, CHUNK_BYTES)
    # struct pages: the page they describe, placed as above, else the boot window
    vm = np.flatnonzero(cap.region == Region.VMEMMAP)
    sp_off = (cap.va[vm] - np.uint64(cap.vmemmap_start)).astype(np.int64)
    sp_page = sp_off // STRUCT_PAGE_BYTES + cap.phys_offset // CHUNK_BYTES
    sp_in = sp_off % STRUCT_PAGE_BYTES
    k = np.searchsorted(pages, sp_page).clip(0, max(pages.size - 1, 0))
    known = pages[k] == sp_page if pages.size else np.zeros(vm.size, bool)
    boot_lo = layout.boot_window()[0]
    vs_lo, _ = layout.vmemmap_span()
    # per repetition: the linear map's and vmemmap's touches
    cols = {f: [] for f in ("va", "pa", "op")}
    for r in range(reps):
        pa_r = pa.copy()
        va_r = va.copy()
        lp = new_page[r, page_of] + cap.pa[lin] % CHUNK_BYTES
        pa_r[lin] = lp
        va_r[lin] = layout.linear_va(lp)
        target = np.where(known, new_page[r, k] if pages.size else 0,
                          boot_lo + sp_page * CHUNK_BYTES - cap.phys_offset)
        sva = layout.vmemmap_va(target) + sp_in.astype(np.uint64)
        sva = sva - sva % np.uint64(LINE_BYTES)
        va_r[vm] = sva
        pa_r[vm] = (sva - np.uint64(vs_lo)).astype(np.int64) + VMEMMAP_BACKING_PA
        cols["va"].append(va_r)
        cols["pa"].append(pa_r)
        cols["op"].append(cap.op + r * per)
    cpu = np.zeros(n, np.uint8) if shape.one_cpu else cap.cpu
    trace = Trace(va=np.concatenate(cols["va"]), pa=np.concatenate(cols["pa"]),
                  lines=np.tile(cap.lines, reps), kind=np.tile(cap.kind, reps),
                  region=np.tile(cap.region, reps), el1=np.tile(cap.el1, reps),
                  op=np.concatenate(cols["op"]).astype(np.int32),
                  instructions=np.tile(cap.instructions, reps),
                  el1_instructions=np.tile(cap.el1_instructions, reps),
                  cpu=np.tile(cpu, reps))
    return trace, spans
