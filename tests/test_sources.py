"""Sources inside kmm: nothing cites a file outside the repository, every params source names
its primary source, and every claim cites the message it comes from."""
import re
import subprocess
from pathlib import Path

import pytest

from kmm.suite import params, registry

ROOT = Path(__file__).resolve().parents[1]

#: Files that live outside the repository and so may never be cited (spelled in pieces, so
#: that this file does not cite them itself).
OUTSIDE = re.compile("|".join([
    r"\b" + "CALIBRATION" + r"\.md\b",
    r"\b" + "CLAIMS" + r"\.md\b",
    r"\b" + "DESIGN" + r"\.md\b",
    r"\b" + "seeds" + r"/",
    r"\b" + "seed" + r" threads?\b",
    r"\b\d{3}_[0-9a-f]{16}\.txt\b",  # a seed file's name
]))

_THREAD = re.compile(r'^thread: [^"]+, "[^"]+", [^,"<>]+, \d{4}-\d{2}-\d{2}, '
                     r"<[^<>\s]+@[^<>\s]+>: \S")
_KERNEL = re.compile(r"^kernel: (arch|include|mm|kernel|lib|drivers|fs|net)/[\w./-]+ \S.*: \S")
_MANUAL = re.compile(r"^manual: [^,]+, [^,]+, (Table|Section|Chapter) [\w.-]+")
_PACKAGE = re.compile(r"^package: [\w.-]+, [^:]+: \S")
_WEB = re.compile(r"^web: [^,:]+, .*"
                  r"(https?://\S+|address not recorded|publication not identified)")
#: a kernel trace shipped in the repository, measured by kmm (kmm/data/traces): one or more
#: files, then what the measurement gives
_TRACE = re.compile(r"^trace: kmm/data/traces/[a-z0-9_]+\.kmmt"
                    r"(, kmm/data/traces/[a-z0-9_]+\.kmmt)*: \S")
FORMS = {"thread": _THREAD, "kernel": _KERNEL, "manual": _MANUAL, "package": _PACKAGE,
         "web": _WEB, "trace": _TRACE}


def _tracked_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def test_no_tracked_file_cites_a_file_outside_the_repository():
    me = Path(__file__).resolve()
    found = []
    for path in _tracked_files():
        if path.resolve() == me or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (images, traces)
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "cites a file outside the repository:\n" + "\n".join(found)


def _specs():
    for path in sorted((ROOT / "params").glob("*.yaml")):
        raw = params.safe_load(path.read_text(encoding="utf-8"), str(path))
        for name, spec in (raw.get("parameters") or {}).items():
            if isinstance(spec, dict):
                yield f"params/{path.name}: {name}", spec


def source_problem(source: str) -> str | None:
    """Why ``source`` is not in the primary-source form, or None if it is."""
    kind = source.split(":", 1)[0]
    if kind not in FORMS:
        return f"unknown kind {kind!r} (one of {', '.join(FORMS)})"
    if not FORMS[kind].search(source):
        return f"not in the {kind} form"
    if kind == "trace":
        missing = [t for t in re.findall(r"kmm/data/traces/[\w-]+\.kmmt", source)
                   if not (ROOT / t).is_file()]
        if missing:
            return f"no such trace: {', '.join(missing)}"
    return None


def test_every_params_source_names_its_primary_source_or_is_assumed():
    bad, n = [], 0
    for where, spec in _specs():
        if "source" in spec:
            n += 1
            problem = source_problem(spec["source"])
            if problem:
                bad.append(f"{where}: {problem}: {spec['source']}")
        elif params.is_cost(where.rsplit(": ", 1)[1], spec.get("unit")):
            if "assumed" not in spec:
                bad.append(f"{where}: a cost with neither a source nor an assumed range")
    assert n >= 40, n  # the files do cite their sources
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, ok", [
    ('thread: linux-mm, "[PATCH] x", A Person, 2020-01-02, <1@example.org>: 5 ns', True),
    ('thread: linux-mm, "[PATCH] x", A Person, Jan 2020, <1@example.org>: 5 ns', False),
    ("kernel: arch/arm64/kernel/patching.c aarch64_insn_patch_text: stop_machine", True),
    ("manual: Some Manual, 123-045, Table 2-15: 128 entries", True),
    ("manual: Some Manual: 128 entries", False),
    ("package: memcached, memcached(1) -t, default 4: 4 threads", True),
    ("web: Vendor, a brief, undated, address not recorded: 3 GHz", True),
    ("web: somewhere: 3 GHz", False),
    ("trace: kmm/data/traces/bpf.kmmt: 1700 visits of 1.8 lines", True),
    ("trace: kmm/data/traces/nosuch.kmmt: 1700 visits", False),
    ("trace: bpf.kmmt: 1700 visits", False),
    ("trace: kmm/data/traces/dmcrypt.kmmt: 24,900 instructions per block", True),
    ("trace: ../elsewhere/x.kmmt: 5", False),
    ("a file next door: 3 GHz", False),
    ("trace: kmm/data/traces/memcached.kmmt: 190 KiB of kernel text", True),
    ("trace: kmm/data/traces/memcached.kmmt, kmm/data/traces/pagecache.kmmt: both", True),
    ("trace: kmm/data/traces/memcached.kmmt, kmm/data/traces/nosuch.kmmt: both", False),
    ("trace: ../elsewhere/memcached.kmmt: 190 KiB", False),
    ("trace: kmm/data/traces/memcached.kmmt", False),
])
def test_the_source_forms(source, ok):
    assert (source_problem(source) is None) == ok


def test_every_claim_cites_list_subject_author_date_and_link():
    for cid in registry.CLAIMS:
        c = registry.citation(cid)
        for field in registry.CITATION_FIELDS:
            assert c.get(field, "").strip(), (cid, field)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", c["date"]), (cid, c["date"])
        assert "@" in c["message_id"] and "<" not in c["message_id"], cid
        assert c["link"].startswith("https://lore.kernel.org/"), cid
        assert c["message_id"] in c["link"], cid  # the link is that message's archive address
        assert c["subject"].split("] ", 1)[0].lstrip("Re: ").startswith("["), cid
        if c.get("said_by") == "not identified":
            assert c.get("note"), cid  # an unidentified author is explained
        text = registry.citation_text(cid)
        assert c["subject"] in text and c["link"] in text and c["date"] in text


def test_claims_table_rows_carry_their_citation(tmp_path, monkeypatch):
    from kmm.suite import claims, cli

    monkeypatch.setenv("KMM_DATA_DIR", str(tmp_path))
    rows = claims.table()
    assert all(r["source"]["link"] and r["cited"] for r in rows)
    text = cli.format_claims(rows, sources=True)
    assert "said by" in text.splitlines()[0]
    assert registry.citation("B9")["link"] in text and "Ryan Roberts" in text
