"""Outputs: written whole under a unique temporary name (removed on every failure), never a
partial file for a concurrent reader, special files written in place and never replaced, output
paths checked before the run, and a cache that cannot be written never loses a run."""
import errno
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading

import pytest

from slmprof import cli, files, report
from slmprof.errors import OutputError
from slmprof.measure import calibrate

PY = sys.executable


def _temporaries(folder):
    return [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    files.write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with files.atomic_write(path) as f:
            f.write("half of the new")
            raise RuntimeError("the work failed")
    assert path.read_text() == "old\n"
    assert _temporaries(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_write(path) as f:
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and _temporaries(tmp_path) == []


def test_errors_name_the_path_given(tmp_path):
    with pytest.raises(OutputError, match=f"cannot write {tmp_path}: it is a directory"):
        files.write_text(tmp_path, "x")
    missing = tmp_path / "nowhere" / "x.json"
    with pytest.raises(OutputError, match="nowhere does not exist"):
        files.write_text(missing, "x")
    with pytest.raises(OutputError, match="cannot write /dev/full: no space left on device"):
        files.write_text("/dev/full", "x" * 100000)
    with pytest.raises(OutputError, match="it is a directory"):
        files.check_writable(tmp_path)
    with pytest.raises(OutputError, match="does not exist"):
        files.check_writable(missing)
    files.check_writable(tmp_path / "fine.json")
    files.check_writable("-")
    assert os.listdir(tmp_path) == []


def test_a_new_file_gets_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    path = files.write_text(tmp_path / "new.json", "{}\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask   # as open() would make it
    os.chmod(path, 0o600)
    files.write_text(path, "{}\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600        # a replaced file keeps its mode


def _writer(path, n, size, seed):
    for i in range(n):
        report.write_json({"schema": report.SCHEMA, "kind": "test", "records": [],
                           "writer": seed, "i": i, "pad": "x" * (size * (1 + i % 7))}, path)


def test_concurrent_writers_and_readers_never_see_a_partial_file(tmp_path):
    path = tmp_path / "shared.json"
    _writer(path, 1, 10, -1)
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_writer, args=(str(path), 300, 20000, k)) for k in range(4)]
    bad, reads = [], [0]
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                doc = json.loads(path.read_text())
                assert doc["kind"] == "test"
                reads[0] += 1
            except (ValueError, KeyError, OSError) as e:
                bad.append(repr(e))
    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    done.set()
    for t in threads:
        t.join()
    assert all(w.exitcode == 0 for w in writers)
    assert not bad, bad[:5]
    assert reads[0] > 0
    assert sorted(os.listdir(tmp_path)) == ["shared.json"]


def _special_files(tmp_path):
    """(name, path) of special files this test may make: a FIFO always, a character device
    (a twin of /dev/null) when running as root."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    made = [("fifo", fifo)]
    if os.geteuid() == 0:
        dev = tmp_path / "null"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        made.append(("device", dev))
    return made


def _is(kind, path):
    mode = os.lstat(path).st_mode
    return stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)


def _drain(path, into):
    with open(path, "rb") as f:
        into.append(f.read())


@pytest.mark.parametrize("option", ["--json", "-o"])
def test_a_special_file_is_written_in_place_never_replaced(tmp_path, option, capsys):
    if os.geteuid() != 0:
        pytest.skip("a device node needs root; the FIFO case runs in test_a_fifo_through_a_symlink")
    for kind, path in _special_files(tmp_path):
        got = []
        reader = threading.Thread(target=_drain, args=(path, got)) if kind == "fifo" else None
        if reader:
            reader.start()
        code = cli.main(["plan", "--model", "smollm2-135m", "--device", "pi5-8gb", "-q",
                         *(["--json", str(path)] if option == "--json" else ["--json", "-", "-o", str(path)])])
        capsys.readouterr()
        if reader:
            reader.join(30)
            assert json.loads(got[0])["kind"] == "plan"
        assert code == 0
        assert _is(kind, path), f"the {kind} was replaced"
    assert _temporaries(tmp_path) == []


def test_a_fifo_through_a_symlink(tmp_path):
    """A FIFO reached through a symlink (as /dev/stdout is a link): written through, and both
    the link and the FIFO are still what they were."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    got = []
    reader = threading.Thread(target=_drain, args=(fifo, got))
    reader.start()
    r = subprocess.run([PY, "-m", "slmprof", "plan", "--model", "smollm2-135m", "--device",
                        "pi5-8gb", "-q", "--json", str(link)], capture_output=True, text=True,
                       timeout=120)
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert json.loads(got[0])["kind"] == "plan"
    assert os.path.islink(link) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert _temporaries(tmp_path) == []


def test_every_writer_writes_special_files_in_place(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a device node")
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    files.write_text(dev, "text")
    files.write_bytes(dev, b"bytes")
    report.write_json({"schema": report.SCHEMA, "kind": "x"}, dev)
    report.write_text("table", dev)
    calibrate.save_profile({"key": {}, "x": 1}, dev)
    assert stat.S_ISCHR(os.lstat(dev).st_mode)
    assert _temporaries(tmp_path) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (root only; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)])


def test_a_full_disk_fails_before_the_run_and_leaves_nothing(small_disk, capsys, monkeypatch):
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    from slmprof.analysis import layers

    def work(*a, **k):
        raise AssertionError("the run started although its output cannot be written")
    monkeypatch.setattr(layers, "profile_layers", work)
    code = cli.main(["layers", "--model", "synth:tiny-llama", "--json", str(small_disk / "r.json")])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    assert f"cannot write {small_disk / 'r.json'}: no space left on device" in err
    assert sorted(os.listdir(small_disk)) == ["filler"]
    # and a write that runs out of space half way names the path and leaves nothing behind
    os.truncate(filler, 0)
    with open(filler, "wb") as f:
        f.write(b"\0" * (200 << 10))
    with pytest.raises(OutputError, match="no space left on device"):
        files.write_text(small_disk / "big.json", "x" * (200 << 10))
    assert sorted(os.listdir(small_disk)) == ["filler"]


def _quick_profile(**kw):
    return _real_measure(threads_max=1, seconds_per_step=0.005, array_bytes=8 << 20)


_real_measure = calibrate.measure


@pytest.mark.parametrize("how", ["read-only", "full"])
def test_a_cache_that_cannot_be_written_never_loses_a_run(tmp_path, tiny_model, monkeypatch,
                                                          capsys, how):
    """`layers` with an explicit model file calibrates, cannot save the calibration, and goes on
    with it in memory, saying so."""
    if how == "read-only":
        blocker = tmp_path / "a-file"
        blocker.write_text("the cache would have to be a directory below this file")
        monkeypatch.setenv("SLMPROF_CACHE", str(blocker / "cache"))
    else:
        monkeypatch.setenv("SLMPROF_CACHE", str(tmp_path / "cache"))

        def full(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(files.tempfile, "mkstemp", full)
    monkeypatch.setattr(calibrate, "measure", _quick_profile)
    # about the cache, not the load: a busy machine would keep the calibration from being saved
    monkeypatch.setattr(calibrate, "busy_reason", lambda profile: None)
    model = tiny_model(arch="llama", type="q8_0")
    code = cli.main(["layers", "--model", str(model), "--threads", "1", "--prompt-tokens", "4",
                     "--gen-tokens", "2", "--events", "none", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "| layer" in out
    assert "not saved" in out and ("no space left" in out if how == "full" else "cannot write" in out)
    assert calibrate.cached_profile() is None


def test_a_killed_writers_temporary_is_swept_a_live_ones_is_not(tmp_path):
    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".model.gguf.{dead}.abcd1234.tmp"
    live = tmp_path / f".model.gguf.{os.getpid()}.efgh5678.tmp"
    old = tmp_path / f".model.gguf.{dead}.partial"
    for p in (stale, live, old):
        p.write_bytes(b"half")
    files.sweep_stale(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [live.name]


def test_a_model_that_cannot_be_written_to_the_cache_is_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SLMPROF_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(calibrate, "measure", _quick_profile)
    code = cli.main(["layers", "--model", "synth:tiny-llama", "--threads", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1
    assert f"cannot write {blocker}/cache/synth/" in err and "Not a directory" in err
