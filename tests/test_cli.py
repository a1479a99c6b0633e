"""The command line as a user meets it: every bad argument is one line and a non-zero exit before
any work, the same option means the same thing in every command, every JSON output carries the
one schema, and Ctrl-C is exit 130."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from slmprof import cli, report
from slmprof.analysis import layers as layers_analysis
from slmprof.bench import harness
from slmprof.engine import model as engine_model
from slmprof.measure import calibrate

PY = sys.executable


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return str(tiny_model(arch="llama", type="q8_0"))     # trained context: 128 positions


def _run(capsys, argv):
    """cli.main in this process: (exit code, stdout, stderr)."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _no_work(monkeypatch):
    """Fail the test if a command gets as far as its work."""
    def work(*a, **k):
        raise AssertionError("the command started its work before its arguments were checked")
    monkeypatch.setattr(engine_model.Model, "load", work)
    monkeypatch.setattr(layers_analysis, "profile_layers", work)
    monkeypatch.setattr(harness, "benchmark", work)
    monkeypatch.setattr(calibrate, "measure", work)


BAD = [
    # (argv with {m} for the tiny model, a piece of the message)
    (["generate", "--model", "{m}", "--prompt", "hi", "--threads", "10000"], "--threads"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--threads", "0"], "--threads"),
    (["bench", "--model", "{m}", "--threads", "0"], "--threads"),
    (["layers", "--model", "{m}", "--threads", "-3"], "--threads"),
    (["calibrate", "--threads", "0"], "--threads"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--ctx", "0"], "--ctx"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--ctx", "99999999"], "--ctx"),
    (["perplexity", "--model", "{m}", "--file", "{text}", "--ctx", "4"], "--ctx"),
    (["perplexity", "--model", "{m}", "--file", "{text}", "--ctx", "4096"], "trained"),
    (["generate", "--model", "{m}", "--prompt", ""], "--prompt"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--temperature", "-1"], "--temperature"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--temperature", "nan"], "--temperature"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--top-p", "0"], "--top-p"),
    (["generate", "--model", "{m}", "--prompt", "hi", "--max-tokens", "-1"], "--max-tokens"),
    (["layers", "--model", "{m}", "--events", "bogus"], "bogus"),
    (["stat", "--events", "bogus", "--", "true"], "bogus"),
    (["layers", "--model", "{m}", "--prompt-tokens", "100000"], "trained"),
    (["layers", "--model", "smollm2-135m", "--prompt-tokens", "100000"], "8192"),
    (["layers", "--model", "{m}", "--prompt-tokens", "0"], "--prompt-tokens"),
    (["layers", "--model", "{m}", "--hz", "20000"], "--hz"),
    (["bench", "--model", "{m}", "-p", "120", "-n", "120"], "trained"),
    (["trace", "--model", "{m}", "--prompt-tokens", "1000", "--chrome", "{tmp}/t.json"], "trained"),
    (["generate", "--model", "{tmp}", "--prompt", "hi"], "is a directory"),
    (["layers", "--model", "{tmp}"], "is a directory"),
    (["models", "--info", "{tmp}"], "is a directory"),
    (["generate", "--model", "{tmp}/missing.gguf", "--prompt", "hi"], "does not exist"),
    (["layers", "--model", "{m}", "--json", "{tmp}/no-such-dir/x.json"], "does not exist"),
    (["layers", "--model", "{m}", "--json", "{tmp}"], "is a directory"),
    (["layers", "--model", "{m}", "--csv", "{tmp}/same", "--json", "{tmp}/same"], "both write"),
    (["bench", "--model", "{m}", "-o", "{tmp}"], "is a directory"),
    (["plan", "--model", "smollm2-135m", "--device", "pi5-8gb", "--json", "{tmp}"], "is a directory"),
    (["plan", "--model", "smollm2-135m", "--device", "{tmp}/none.json"], "does not exist"),
    (["plan", "--device", "pi5-8gb"], "--model"),
    (["perplexity", "--model", "{m}", "--file", "{tmp}/missing.txt"], "no such file"),
    (["trace", "--from", "{tmp}/missing.npz", "--chrome", "{tmp}/x.json"], "no such file"),
    (["trace", "--model", "{m}"], "--chrome"),
    (["bench", "--model", "{m}", "--backend", "vllm"], "vllm"),
    (["validate", "--types", "q9_9"], "q9_9"),
    (["compare", "--ladder", "--models", "{m}"], "--ladder"),
    (["stat"], "no command"),
    (["layers", "--no-such-option"], "unrecognized"),
    (["no-such-command"], "invalid choice"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_are_one_line_before_any_work(argv, message, tiny, tmp_path, capsys,
                                                    monkeypatch):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "text.txt"
    text.write_text("some words to score " * 50)
    argv = [a.format(m=tiny, tmp=tmp_path, text=text) for a in argv]
    _no_work(monkeypatch)
    code, out, err = _run(capsys, argv)
    assert code != 0, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("slmprof") and ": error: " in lines[0]
    assert message in lines[0]
    assert "Traceback" not in err and out == ""
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("argv", [
    ["generate", "--model", "{m}", "--prompt", "hi", "--threads", "10000"],
    ["layers", "--model", "{m}", "--events", "bogus"],
    ["generate", "--model", "{tmp}", "--prompt", "hi"],
    ["layers", "--model", "{m}", "--json", "{tmp}/nowhere/x.json"],
])
def test_bad_arguments_in_a_real_process(argv, tiny, tmp_path):
    argv = [a.format(m=tiny, tmp=tmp_path) for a in argv]
    r = subprocess.run([PY, "-m", "slmprof", *argv], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "SLMPROF_CACHE": str(tmp_path / "cache")})
    assert r.returncode != 0
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_threads_above_the_usable_cores_are_said_once(tiny, capsys):
    n = engine_model.default_threads() + 1
    code, out, err = _run(capsys, ["generate", "--model", tiny, "--prompt", "hi", "--max-tokens",
                                   "2", "--threads", str(n)])
    assert code == 0, err
    assert err.count("usable core") == 1


def test_a_context_beyond_the_trained_one_is_said_once(tiny, capsys):
    code, out, err = _run(capsys, ["generate", "--model", tiny, "--prompt", "hi", "--max-tokens",
                                   "2", "--ctx", "1000"])
    assert code == 0, err
    assert err.count("trained for") == 1


def test_generate_says_when_the_context_is_full(tiny, capsys):
    code, out, err = _run(capsys, ["generate", "--model", tiny, "--prompt", "hello there",
                                   "--ctx", "8", "--max-tokens", "50", "--no-stop", "-q"])
    assert code == 0, err
    assert "context of 8 positions is full" in err


def test_a_prompt_longer_than_the_context_is_one_line(tiny, capsys):
    code, out, err = _run(capsys, ["generate", "--model", tiny, "--prompt", "hello there " * 20,
                                   "--ctx", "8"])
    assert code == 2 and len(err.splitlines()) == 1 and "--prompt" in err and out == ""


def test_interrupt_is_exit_130_and_one_line(monkeypatch, capsys, tmp_path):
    from slmprof.commands import plan

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(plan, "run", interrupted)
    code, out, err = _run(capsys, ["plan", "--model", "smollm2-135m", "--device", "pi5-8gb"])
    assert code == 130
    assert [line for line in err.splitlines() if line] == ["slmprof plan: interrupted"]


def test_ctrl_c_in_a_real_run(tmp_path):
    """SIGINT during a calibration: exit 130, one line, no traceback, nothing half-written."""
    proc = subprocess.Popen([PY, "-m", "slmprof", "calibrate", "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "SLMPROF_CACHE": str(tmp_path)})
    first = proc.stderr.readline()          # the first step's line: the calibration is running
    assert first.startswith("calibrate ["), first
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert lines[-1] == "slmprof calibrate: interrupted"
    assert all(line.startswith("calibrate [") for line in lines[:-1]), err
    left = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not left, left


# ------------------------------------------------------------------------------------------
# The same option, the same meaning

def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_command_has_examples_and_quiet():
    for name, p in _subparsers().items():
        assert p.epilog and "python -m slmprof " + name in p.epilog, name
        assert "-q" in p._option_string_actions and "--quiet" in p._option_string_actions, name


def test_json_means_a_file_or_standard_output_everywhere():
    for name, p in _subparsers().items():
        action = p._option_string_actions.get("--json")
        if action is None:
            continue
        assert action.nargs == "?" and action.const == "-", name
        assert action.dest == "json_file", name
    with_json = {n for n, p in _subparsers().items() if "--json" in p._option_string_actions}
    # every command whose results are figures; trace, requantize and plot write files of their
    # own kinds (-o, --chrome), and --json there would mean nothing else
    assert with_json == set(_subparsers()) - {"trace", "requantize", "plot"}


def _json_outputs(tiny, tmp):
    text = tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    return {
        "plan": ["plan", "--model", "smollm2-135m", "--device", "pi5-8gb"],
        "models": ["models"],
        "model": ["models", "--info", tiny],
        "sysinfo": ["sysinfo"],
        "perplexity": ["perplexity", "--model", tiny, "--file", str(text), "--ctx", "16",
                       "--max-windows", "2"],
        "machine": ["calibrate"],
        "stat": ["stat", "--events", "task-clock", "--", "true"],
        "generate": ["generate", "--model", tiny, "--prompt", "hi", "--max-tokens", "2"],
    }


def test_every_json_output_has_the_one_schema(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path / "cache"))
    calibrate.save_profile(calibrate.measure(threads_max=1, seconds_per_step=0.005,
                                             array_bytes=8 << 20))
    for kind, argv in _json_outputs(tiny, tmp_path).items():
        path = tmp_path / f"{kind}.json"
        at = argv.index("--") if "--" in argv else len(argv)
        code, out, err = _run(capsys, argv[:at] + ["--json", str(path), "-q"] + argv[at:])
        assert code == 0, (kind, err)
        doc = json.loads(path.read_text())
        assert doc["schema"] == report.SCHEMA and doc["kind"] == kind, kind
        assert report.schema_of(doc) == (kind, report.SCHEMA_VERSION)
        # --json alone: the same document on standard output instead of the table
        if kind not in ("stat",):
            code, out, err = _run(capsys, argv[:at] + ["--json", "-q"] + argv[at:])
            assert code == 0, (kind, err)
            assert json.loads(out)["kind"] == kind


@pytest.mark.parametrize("doc, kind", [
    ({"schema": "slmprof.machine", "schema_version": 1}, "machine"),
    ({"schema": "slmprof-device", "schema_version": 1}, "device"),
    ({"schema": "slmprof.stat/1"}, "stat"),
    ({"schema": "slmprof.measure.sysinfo/1"}, "sysinfo"),
    ({"schema": "slmprof/1", "kind": "bench", "records": []}, "bench"),
])
def test_readers_accept_the_older_names(doc, kind):
    assert report.schema_of(doc)[0] == kind


def test_a_newer_legacy_document_is_refused():
    with pytest.raises(report.ReportError, match="newer"):
        report.schema_of({"schema": "slmprof.machine", "schema_version": 2})


def test_the_file_reader_does_not_import_the_report_layer():
    code = ("import sys, slmprof.engine.gguf, slmprof.engine.registry, slmprof.engine.model; "
            "print([m for m in sys.modules if m.startswith(('slmprof.report', 'slmprof.measure',"
            " 'slmprof.commands'))])")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_compare_does_not_import_another_commands_helpers():
    import ast
    from slmprof.commands import compare
    tree = ast.parse(open(compare.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.startswith("slmprof.commands.") and m != "slmprof.commands._options"
                   for m in imported)


def test_a_recording_and_its_trace_carry_the_schema(tiny, tmp_path, capsys):
    from slmprof.measure import trace
    rec, tr = tmp_path / "run.npz", tmp_path / "run.json"
    code, out, err = _run(capsys, ["trace", "--model", tiny, "--threads", "1", "--prompt-tokens",
                                   "4", "--gen-tokens", "2", "--hz", "0", "-o", str(rec),
                                   "--chrome", str(tr), "-q"])
    assert code == 0, err
    data = trace.load(rec)
    assert report.schema_of(data["meta"]) == ("recording", report.SCHEMA_VERSION)
    assert report.schema_of(json.loads(tr.read_text()))[0] == "trace"
    again = tmp_path / "again.json"
    code, out, err = _run(capsys, ["trace", "--from", str(rec), "--chrome", str(again), "-q"])
    assert code == 0, err
    assert json.loads(again.read_text())["traceEvents"] == json.loads(tr.read_text())["traceEvents"]
