"""The README's quick start is what CI runs, and every kmm command it shows runs as printed."""
import contextlib
import os
import re
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = ROOT.joinpath("README.md").read_text()
    ci = ROOT.joinpath(".ci", "run").read_text()
    test_cmd = 'python3 -m pip install -e ".[test]" && python3 -m pytest -n auto'
    assert f"    {test_cmd}\n" in readme
    assert [ln for ln in ci.splitlines() if not ln.startswith("#")][-1].strip() == test_cmd


def test_readme_main_job_command_is_the_reproduce_entry_point():
    readme = ROOT.joinpath("README.md").read_text()
    assert "    python3 -m pip install -e . && python3 -m kmm reproduce\n" in readme
    assert ROOT.joinpath("kmm", "__main__.py").is_file()


def test_readme_images_are_in_the_repository():
    readme = ROOT.joinpath("README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images and all(ROOT.joinpath(i).is_file() for i in images), images
    assert all(ROOT.joinpath(i).stat().st_size < 300_000 for i in images)


# ---- every kmm command the README shows runs as printed ----------------------------------------

#: The README's placeholder for a Dask scheduler, replaced by a LocalCluster's address.
SCHEDULER = "tcp://host:8786"
#: `kmm reproduce` runs these two (seconds at their published scenarios), not all seven.
REPRODUCE_ONLY = ["bbml2_structure", "overview"]
LACKEY = ROOT / "tests" / "data" / "lackey_true.txt"


def readme_commands() -> list[list[str]]:
    """Every ``kmm`` command in the README's indented code blocks, as argv after ``kmm``
    (``python3 -m kmm`` included, comments and a leading ``pip install ... &&`` dropped)."""
    out = []
    for line in ROOT.joinpath("README.md").read_text().splitlines():
        if not line.startswith("    ") or line.startswith("     "):
            continue
        for part in line.strip().split("&&"):
            argv = shlex.split(part, comments=True)
            if argv[:3] == ["python3", "-m", "kmm"]:
                argv = ["kmm", *argv[3:]]
            if argv and argv[0] == "kmm":
                out.append(argv[1:])
    return out


def test_readme_commands_are_found():
    found = {" ".join(c[:2]) for c in readme_commands()}
    assert {"run ktr", "reproduce", "params export", "sweep params/permvmalloc.yaml",
            "trace ls.lackey"} <= found, found


def runnable(argv: list[str], tmp: Path, scheduler: str) -> list[str]:
    """``argv`` made to write under ``tmp`` (and to be quick where the README's is long)."""
    argv = list(argv)
    command = argv[0]
    if command == "run":
        return [*argv, "--out", str(tmp / "notebooks")]
    if command == "sweep":
        argv = [scheduler if a == SCHEDULER else a for a in argv]
        lane = "dask" if "--scheduler" in argv else "local"
        return [*argv, "--out", str(tmp / "sweeps" / lane), "--quiet"]
    if command == "params":
        assert "--out" in argv, argv
        i = argv.index("--out")
        return [*argv[: i + 1], str(tmp / argv[i + 1]), *argv[i + 2:]]
    if command == "reproduce":
        return argv if "--only" in argv else [*argv, "--only", *REPRODUCE_ONLY]
    if command == "trace":
        return [str(LACKEY) if a == "ls.lackey" else a for a in argv]
    if command == "claims":
        return argv
    raise AssertionError(f"README shows `kmm {' '.join(argv)}`: teach this test to run it")


@pytest.mark.slow
def test_every_readme_kmm_command_runs_as_printed(tmp_path):
    distributed = pytest.importorskip("distributed")
    commands = readme_commands()
    env = {**os.environ, "KMM_DATA_DIR": str(tmp_path / "data"), "KMM_PROGRESS": "off",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # a published run and reproduce each hold the data folder's lock: one at a time
    publishing = threading.Lock()

    def run(argv: list[str]) -> tuple[list[str], subprocess.CompletedProcess]:
        holds = argv[0] == "reproduce" or (argv[0] == "run" and "--params" in argv
                                           and "--variant" not in argv and "-p" not in argv)
        with publishing if holds else contextlib.nullcontext():
            return argv, subprocess.run([sys.executable, "-m", "kmm", *argv], cwd=ROOT, env=env,
                                        capture_output=True, text=True, timeout=600)

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        argvs = [runnable(c, tmp_path, cluster.scheduler_address) for c in commands]
        # longest first, two at a time (the machine has two cores)
        argvs.sort(key=lambda a: (a[0] not in ("run", "sweep"), "--params" not in a))
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(run, argvs))
    failed = [f"kmm {' '.join(a)}: exit {r.returncode}: {r.stderr.strip()[-500:]}"
              for a, r in results if r.returncode != 0]
    assert failed == [], "\n".join(failed)
    made = {p.name for p in (tmp_path / "notebooks").iterdir()}
    assert {"ktr.small.ipynb", "ktr.ipynb", "ktr.no_migration.ipynb"} <= made, made
    assert any(re.fullmatch(r"ktr\.custom-[0-9a-f]{8}\.ipynb", m) for m in made), made
    for lane in ("local", "dask"):
        assert (tmp_path / "sweeps" / lane / "permvmalloc-cpus.parquet").is_file()
    assert (tmp_path / "ktr.params.yaml").is_file()


def test_readme_states_the_verdict_rules():
    """The verdict rules (not the bands) are in the repository: every verdict string, every
    basis and the one definition of "decided by" (issue 25)."""
    from kmm.suite import registry

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    start = text.index("## How a verdict is reached")
    section = text[start:text.index("\n## ", start + 1)]
    for word in (*registry.VERDICTS, *registry.BASES, registry.SMALL_RUN, "decided by",
                 "alone", "not checked", "converged", "Assumed("):
        assert word.lower() in section.lower(), word
    assert "How a verdict is reached" in registry.__doc__
