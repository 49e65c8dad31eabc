"""benchmarks/report.py: the runs of their own appended to RESULTS.md, their headings one level
down, code fences left alone."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_headings_go_one_level_down_outside_code_fences():
    report = _report()
    text = "# Title\n\n## Part\ntext # not a heading\n```bash\n# a comment\n```\n### Sub"
    assert report.demoted(text).splitlines() == [
        "## Title", "", "### Part", "text # not a heading", "```bash", "# a comment", "```", "#### Sub"]


def test_runs_are_appended_after_the_suites_tables(tmp_path, monkeypatch, capsys):
    report = _report()
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"benchmarks": [{"stats": {"median": 1.0}}]}))
    run = tmp_path / "run.md"
    run.write_text("# A screen\n\n## Findings\n| a | b |\n")
    monkeypatch.setattr(report, "report", lambda doc: "# Benchmark results\n")
    assert report.main([str(results), "--runs", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.index("# Benchmark results") < out.index("## A screen") < out.index("### Findings")
    assert f"(From `{run}`.)" in out
