import argparse
import csv
import io
import json
import math

import numpy as np
import pytest

from slmprof import report
from slmprof.report import Column


def _records():
    return [
        {"backend": "slmprof", "test": "decode", "tok_s_mean": 123.456, "ratio": 1.0,
         "samples": [1.0, 2.0]},
        {"backend": "llama.cpp", "test": "decode", "tok_s_mean": float("nan"), "ratio": None,
         "samples": []},
    ]


def test_report_round_trip(tmp_path):
    rep = report.make_report("bench", _records(), model={"name": "synth:tiny"},
                             settings={"threads": np.int64(2)}, notes=["no PMU"])
    assert rep["schema"] == report.SCHEMA and rep["kind"] == "bench"
    assert rep["machine"]["cores"] >= 1
    path = tmp_path / "r.json"
    report.write_json(rep, path)
    back = report.read_json(path, kind="bench")
    assert back["records"][0]["tok_s_mean"] == pytest.approx(123.456)
    # NaN is not JSON: an unmeasured value is null.
    assert back["records"][1]["tok_s_mean"] is None
    assert back["settings"]["threads"] == 2
    assert back["notes"] == ["no PMU"]
    assert not (tmp_path / "r.json.tmp").exists()


@pytest.mark.parametrize("obj,message", [
    ({"records": []}, "no 'schema'"),
    ({"schema": "other/1", "records": []}, "not an slmprof schema"),
    ({"schema": "slmprof/99", "records": []}, "newer"),
    ({"schema": "slmprof/1"}, "records"),
])
def test_bad_reports_are_rejected(tmp_path, obj, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(report.ReportError, match=message):
        report.read_json(path)


def test_wrong_kind_and_not_json(tmp_path):
    path = tmp_path / "r.json"
    report.write_json(report.make_report("layers", []), path)
    with pytest.raises(report.ReportError, match="expected 'bench'"):
        report.read_json(path, kind="bench")
    path.write_text("{not json")
    with pytest.raises(report.ReportError, match="not valid JSON"):
        report.read_json(path)
    with pytest.raises(report.ReportError, match="cannot read"):
        report.read_json(tmp_path / "missing.json")


def test_markdown_table_aligns_numbers_right():
    cols = [Column("backend"), Column("tok_s_mean", "t/s", ".1f"), Column("ratio", fmt="{:.2f}x")]
    text = report.format_table(_records(), cols, style="md")
    lines = text.splitlines()
    assert lines[0].startswith("| backend") and "t/s" in lines[0]
    assert lines[1].endswith(": |")           # numeric column right-aligned
    assert "| 123.5 |" in lines[2] and "1.00x" in lines[2]
    assert "n/a" in lines[3]                  # NaN shown, not hidden
    widths = {len(x) for x in lines}
    assert len(widths) == 1                   # every row the same width


def test_plain_table_and_bad_style():
    text = report.format_table(_records(), ["backend", "test"], style="plain")
    assert text.splitlines()[0].split() == ["backend", "test"]
    with pytest.raises(ValueError):
        report.format_table(_records(), style="html")


def test_csv_has_raw_values():
    text = report.to_csv(_records(), ["backend", "tok_s_mean", "samples", "ratio"])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["backend", "tok_s_mean", "samples", "ratio"]
    assert rows[1] == ["slmprof", "123.456", "1.0 2.0", "1.0"]
    assert rows[2] == ["llama.cpp", "", "", ""]


def test_render_formats():
    rep = report.make_report("bench", _records(), notes=["energy: no sensor"])
    assert json.loads(report.render(rep, "json"))["kind"] == "bench"
    assert "note: energy: no sensor" in report.render(rep, "md", ["backend"])
    with pytest.raises(ValueError):
        report.render(rep, "xml")


def test_mean_std():
    m, s = report.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert report.mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in report.mean_std([]))


def test_progress_is_silent_when_not_a_tty_or_quiet():
    buf = io.StringIO()
    with report.Progress(total=3, what="x", stream=buf, delay=0) as bar:
        for _ in range(3):
            bar.advance()
    assert buf.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with report.Progress(total=2, what="work", stream=tty, delay=0) as bar:
        bar.advance()
    assert "work [" in tty.getvalue() and "1/2" in tty.getvalue()
    quiet = Tty()
    with report.Progress(total=2, what="work", stream=quiet, delay=0, quiet=True) as bar:
        bar.advance()
    assert quiet.getvalue() == ""


def test_output_arguments():
    p = argparse.ArgumentParser()
    report.add_output_arguments(p)
    args = p.parse_args(["--format", "csv", "-o", "x.csv", "--quiet"])
    assert args.format == "csv" and args.output == "x.csv" and args.quiet
