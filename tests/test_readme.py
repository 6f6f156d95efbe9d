"""The README's quick start is what CI runs."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = ROOT.joinpath("README.md").read_text()
    ci = ROOT.joinpath(".ci", "run").read_text()
    test_cmd = 'python3 -m pip install -e ".[test]" && python3 -m pytest'
    assert f"    {test_cmd}\n" in readme
    assert [ln for ln in ci.splitlines() if not ln.startswith("#")][-1].strip() == test_cmd


def test_readme_main_job_command_is_the_reproduce_entry_point():
    readme = ROOT.joinpath("README.md").read_text()
    assert "    python3 -m pip install -e . && python3 -m kmm reproduce\n" in readme
    assert ROOT.joinpath("kmm", "__main__.py").is_file()
