"""kmm.traces: lackey reader on a real recorded trace and on broken ones."""
import io
import os

import numpy as np
import pytest

from kmm import geometry, tlb, traces, walk
from kmm.errors import TraceError
from kmm.tlb import Kind, TLBConfig

DATA = os.path.join(os.path.dirname(__file__), "data")
TRUE = os.path.join(DATA, "lackey_true.txt")   # valgrind --tool=lackey --trace-mem=yes /bin/true


def test_hand_written_records():
    text = ("==1== Lackey, an example Valgrind tool\n"
            "==1== \n"
            "I  0401ab70,3\n"
            " L 04221e58,8\n"
            " S 1fff000778,8\n"
            " M 0421f1f0,4\n"
            "\n"
            "==1== Exit code:       0\n")
    t = traces.read_lackey(io.StringIO(text))
    assert t.address.tolist() == [0x0401AB70, 0x04221E58, 0x1FFF000778, 0x0421F1F0,
                                  0x0421F1F0]
    assert t.kind.tolist() == [Kind.IFETCH, Kind.LOAD, Kind.STORE, Kind.LOAD, Kind.STORE]
    assert t.size.tolist() == [3, 8, 8, 4, 4]
    assert t.instructions == 1 and t.meta["records"] == 4
    assert traces.read_lackey(io.StringIO(text), modify="store").kind.tolist()[-1] == Kind.STORE
    assert len(traces.read_lackey(io.StringIO(text), max_records=2)) == 2


def test_recorded_trace_reads_completely():
    t = traces.read_lackey(TRUE)
    with open(TRUE) as fh:
        lines = fh.read().splitlines()
    records = [ln for ln in lines if not ln.startswith("==")]
    assert t.meta["records"] == len(records)
    assert t.instructions == sum(ln.startswith("I") for ln in records)
    n_modify = sum(ln.startswith(" M") for ln in records)
    assert len(t) == len(records) + n_modify
    # the dynamic loader's first fetch in the recorded run
    assert t.address[0] == int(records[0].split()[1].split(",")[0], 16)


@pytest.mark.parametrize("name,line", [("lackey_malformed.txt", 5), ("lackey_truncated.txt", 41)])
def test_broken_traces_name_file_and_line(name, line):
    path = os.path.join(DATA, name)
    with pytest.raises(TraceError) as e:
        traces.read_lackey(path)
    assert e.value.where == f"{path}:{line}"


@pytest.mark.parametrize("bad", ["I  zz,3\n", "I  0401,\n", " L 0401\n", "I 0401,3\n",
                                 " Q 0401,8\n", "I  0401,0\n", "garbage\n"])
def test_each_malformed_record_is_an_error(bad):
    with pytest.raises(TraceError, match="<stream>:2"):
        traces.read_lackey(io.StringIO("I  0401ab70,3\n" + bad))


def test_recorded_trace_through_a_tlb_hierarchy():
    t = traces.read_lackey(TRUE)
    cfg = TLBConfig.neoverse_n1()
    c = tlb.simulate_trace(t.address, cfg, **t.kwargs())
    assert c.accesses == len(t)
    assert c.l1i_hits + c.l1i_misses == t.instructions
    assert c.l1d_hits + c.l1d_misses == len(t) - t.instructions
    # every distinct page is walked at least once, and a 1280-entry L2 holds them all
    pages = np.unique(t.address >> np.uint64(12)).size
    assert c.misses == pages
    # and through the full path
    g = geometry.arm64("4K", 48)
    r = walk.simulate_path(t.address, walk.PathConfig(tlb=cfg.with_geometry(g), stage1=g),
                           **t.kwargs())
    assert r.walk.walks == pages
    # no walk cache: four descriptor reads per walk; with it, fewer
    assert r.walk.refs < 4 * pages and r.walk.walk_cache_hits > 0
    assert r.walk.refs == r.walk.s1_refs


@pytest.mark.parametrize("modify", ["both", "load", "store"])
def test_block_parser_equals_line_parser(modify):
    with open(TRUE) as fh:
        lines = fh.readlines()
    fast = traces._fast_block(lines, modify)
    assert fast is not None
    m_kinds = {"both": (Kind.LOAD, Kind.STORE), "load": (Kind.LOAD,),
               "store": (Kind.STORE,)}[modify]
    codes = {"I": (Kind.IFETCH,), "L": (Kind.LOAD,), "S": (Kind.STORE,), "M": m_kinds}
    addr, kind, size = [], [], []
    records = traces._slow_block(lines, 1, TRUE, codes, addr, kind, size)
    assert records == fast[3]
    assert np.array_equal(np.concatenate(addr), fast[0])
    assert np.array_equal(np.concatenate(kind), fast[1])
    assert np.array_equal(np.concatenate(size), fast[2])
    # a bad line anywhere sends the block to the line parser
    assert traces._fast_block(lines[:10] + ["I  0401,\n"] + lines[10:], modify) is None


def test_hex_decoding_at_every_width():
    values = [0, 1, 0xF, 0xABCDEF, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]
    got = traces._hex_to_u64([f"{v:x}" for v in values] + ["DEADbeef"])
    assert got.tolist() == values + [0xDEADBEEF]


def test_a_shipped_trace_is_found_by_its_scenario_name():
    from kmm.errors import ConfigError

    shipped = {p.stem: p for p in traces.shipped_kernel_traces()}
    assert traces.shipped_trace_path("bpf") == shipped["bpf"]
    t = traces.read_shipped_trace("bpf")
    assert len(t) == t.manifest["refs"] and t.manifest["scenario"]["name"] == "bpf"
    with pytest.raises(ConfigError, match=r"no shipped trace 'nosuch'; shipped: bpf, dmcrypt"):
        traces.shipped_trace_path("nosuch", "scenarios")
    with pytest.raises(ConfigError):
        traces.read_shipped_trace("../bpf")  # a name, never a path
