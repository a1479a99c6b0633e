"""What the command line promises everywhere, checked across every command: a forced kernel path
the CPU lacks is refused before any work, binary outputs go into special files in place, -q leaves
stderr empty, exit codes are chosen in cli.main only, and no module imports the package's own
modules inside a function. The whole sweep of issue-style faults is scripts/hardening_sweep.py
(run by the slow test at the end)."""
import ast
import errno
import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from slmprof import cli, errors, report
from slmprof.analysis import devices, plan
from slmprof.engine import quant
from slmprof.measure import calibrate, trace

PY = sys.executable
PACKAGE = Path(cli.__file__).parent
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return str(tiny_model(arch="llama", type="q8_0"))


# ------------------------------------------------------------------------------------------
# SLMPROF_ISA naming a path this machine lacks


def _missing_path():
    missing = [n for n in quant.isa_names() if n not in quant.available_isas()]
    if not missing:
        pytest.skip("this machine runs every kernel path: none to refuse")
    return missing[0]


ENGINE_COMMANDS = [
    ["generate", "--model", "{m}", "--prompt", "hi"],
    ["layers", "--model", "{m}"],
    ["bench", "--model", "{m}"],
    ["trace", "--model", "{m}", "--chrome", "{tmp}/t.json"],
    ["perplexity", "--model", "{m}", "--file", "{tmp}/text.txt"],
    ["compare", "--models", "{m}"],
    ["validate", "--quick"],
]


@pytest.mark.parametrize("argv", ENGINE_COMMANDS, ids=[a[0] for a in ENGINE_COMMANDS])
def test_a_forced_path_the_cpu_lacks_is_refused_before_any_work(argv, tiny, tmp_path):
    """One line with the reason sysinfo gives, exit 3 (unavailable), before any setup line."""
    missing = _missing_path()
    (tmp_path / "text.txt").write_text("words to score " * 40)
    argv = [a.format(m=tiny, tmp=tmp_path) for a in argv]
    r = subprocess.run([PY, "-m", "slmprof", *argv], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "SLMPROF_ISA": missing})
    assert r.returncode == 3, r.stderr
    assert r.stderr.splitlines() == [f"slmprof {argv[0]}: error: SLMPROF_ISA='{missing}': this "
                                     f"CPU or build cannot run it (available: "
                                     f"{', '.join(quant.available_isas())})"]
    assert r.stdout == "" and os.listdir(tmp_path) == ["text.txt"]


# ------------------------------------------------------------------------------------------
# Binary outputs into special files


def _recording():
    return {"edges": np.zeros(4, np.uint64),
            "meta": {"schema": report.SCHEMA, "kind": trace.KIND, "notes": []},
            "samples": {"t_ns": np.arange(3, dtype=np.uint64)}}


def test_a_recording_goes_into_a_device_or_a_fifo_in_place(tmp_path):
    """A .npz recording is a zip, which seeks back to write its directory: into a device node
    or a FIFO it is written whole in place, and the node stays what it was."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    trace.save(_recording(), fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    copy = tmp_path / "copy.npz"
    copy.write_bytes(got[0])
    assert trace.load(copy)["meta"]["kind"] == trace.KIND
    if os.geteuid() == 0:
        dev = tmp_path / "null"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        trace.save(_recording(), dev)
        assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ------------------------------------------------------------------------------------------
# -q/--quiet: nothing on stderr from a run that works


def _quiet_runs(tiny, tmp):
    text = tmp / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    run = ["--model", tiny, "--threads", "1"]
    return {
        "generate": ["generate", *run, "--prompt", "hi", "--max-tokens", "2"],
        "layers": ["layers", *run, "--prompt-tokens", "4", "--gen-tokens", "2", "--events", "none",
                   "--json", str(tmp / "layers.json")],
        "plot": ["plot", "layers", str(tmp / "layers.json"), "-o", str(tmp / "layers.png")],
        "trace": ["trace", *run, "--prompt-tokens", "4", "--gen-tokens", "2", "--hz", "0",
                  "--chrome", str(tmp / "t.json")],
        "perplexity": ["perplexity", *run, "--file", str(text), "--ctx", "16", "--max-windows", "1"],
        "requantize": ["requantize", "--model", tiny, "--type", "q4_0", "-o", str(tmp / "r.gguf")],
        "bench": ["bench", *run, "-p", "4", "-n", "2", "-r", "1", "--no-cold", "--no-bandwidth"],
        "compare": ["compare", "--models", tiny, "--threads", "1", "-p", "4", "-n", "2", "-r", "1",
                    "--no-quality"],
        "plan": ["plan", "--model", "smollm2-135m", "--device", "pi5-8gb"],
        "models": ["models"],
        "sysinfo": ["sysinfo"],
        "calibrate": ["calibrate"],
        "validate": ["validate", "--model", "none", "--types", "q8_0", "--isa", "scalar", "--quick"],
    }


def test_quiet_means_nothing_on_stderr_in_every_command(tiny, tmp_path, capfd):
    calibrate.save_profile(calibrate.measure(threads_max=1, seconds_per_step=0.005,
                                             array_bytes=8 << 20))
    runs = _quiet_runs(tiny, tmp_path)
    # stat's summary is its result and goes to stderr, as perf stat's does
    assert set(runs) | {"stat"} == set(_subparsers())
    if importlib.util.find_spec("matplotlib") is None:
        del runs["plot"]
    for name, argv in runs.items():
        code = cli.main(argv + ["-q"])
        out, err = capfd.readouterr()      # the file descriptor: bench's workers write there
        assert code == 0, (name, err)
        assert err == "", (name, err)


def _subparsers():
    parser = cli.build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


# ------------------------------------------------------------------------------------------
# Exit codes: chosen in cli.main only


@pytest.mark.parametrize("error, code", [
    (errors.UsageError("x"), cli.EXIT_USAGE),
    (errors.ModelFileError("x"), cli.EXIT_USAGE),
    (errors.UnavailableError("x"), cli.EXIT_UNAVAILABLE),
    (errors.CheckFailed("x"), cli.EXIT_FAILURE),
    (errors.OutputError("x"), cli.EXIT_FAILURE),
    (errors.CommandNotStarted("x", errno.ENOENT), cli.EXIT_NOT_FOUND),
    (errors.CommandNotStarted("x", errno.EACCES), cli.EXIT_NOT_EXECUTABLE),
    (KeyboardInterrupt(), cli.EXIT_INTERRUPTED),
    (OSError(errno.EIO, "x"), cli.EXIT_FAILURE),
])
def test_each_kind_of_error_has_one_exit_code(error, code):
    assert cli.exit_code(error) == code


def _command_sources():
    return sorted((PACKAGE / "commands").glob("*.py"))


def test_commands_raise_errors_and_never_choose_an_exit_code():
    """A command raises (slmprof.errors) and cli.main prints the line and picks the code: no
    command exits, prints to stderr itself, or returns a number of its own (stat returns its
    child's status, a variable)."""
    found = []
    for path in _command_sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Attribute) and node.attr in ("exit", "_exit") \
                    and isinstance(node.value, ast.Name) and node.value.id in ("sys", "os"):
                found.append(f"{where} {node.value.id}.{node.attr}")
            if isinstance(node, ast.Name) and node.id == "SystemExit":
                found.append(f"{where} SystemExit")
            if isinstance(node, ast.Call) and any(
                    k.arg == "file" and ast.unparse(k.value) == "sys.stderr" for k in node.keywords):
                found.append(f"{where} print to stderr")
            if isinstance(node, ast.FunctionDef) and node.name == "run":
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Constant) \
                            and isinstance(ret.value.value, int):
                        found.append(f"{path.name}:{ret.lineno} run returns {ret.value.value}")
    assert not found, found


# ------------------------------------------------------------------------------------------
# Imports at module top


def _imports_in_functions(path):
    """The package's own modules imported inside a function, unless a comment on the line or
    the one above says why."""
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            own = (isinstance(node, ast.Import) and any(a.name.startswith("slmprof") for a in node.names)) \
                or (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("slmprof")))
            if own:
                said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
                if not said:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_module_imports_the_package_inside_a_function():
    found = [f for path in sorted(PACKAGE.rglob("*.py")) for f in _imports_in_functions(path)]
    assert not found, found


# ------------------------------------------------------------------------------------------
# One schema for the files kept in the cache too


def test_the_caches_json_files_carry_the_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path))
    eff = plan.default_efficiency()
    path = plan.store_efficiency(eff)
    assert report.schema_of(json.loads(path.read_text())) == ("efficiency", report.SCHEMA_VERSION)
    assert plan.stored_efficiency().decode == eff.decode
    monkeypatch.setattr(devices, "measure_storage_read", lambda directory: 123.4)
    first = devices.storage_read_speed(tmp_path)
    doc = json.loads((tmp_path / "storage-read.json").read_text())
    assert report.schema_of(doc) == ("storage-read", report.SCHEMA_VERSION)
    assert devices.storage_read_speed(tmp_path)["MBps"] == first["MBps"] == 123.4


# ------------------------------------------------------------------------------------------
# The whole sweep


@pytest.mark.slow
def test_the_hardening_sweep_passes():
    r = subprocess.run([PY, str(ROOT / "scripts" / "hardening_sweep.py"), "--quick"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
