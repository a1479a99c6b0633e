"""`slmprof bench` on tiny synthetic models: the slmprof backend always, ctransformers where it
is installed (it loads SPM-vocabulary llama files with an output.weight). No timing is asserted."""
import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from slmprof.bench import backends

from slmprof import report

HAVE_CTRANSFORMERS = importlib.util.find_spec("ctransformers") is not None
HAVE_ENGINE = importlib.util.find_spec("slmprof.engine.model") is not None
needs_engine = pytest.mark.skipif(not HAVE_ENGINE, reason="slmprof.engine.model (the engine) is not in this build")


def _bench(tmp_path, *extra, env_cache=None):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "slmprof", "bench", "-p", "8", "-n", "4", "-r", "2",
           "--threads", "1", "--format", "json", "--output", str(out), *extra]
    env = dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    rep = report.read_json(out, kind="bench") if out.exists() else None
    return proc, rep


def _check_records(rep, backend, reps=2):
    recs = [r for r in rep["records"] if r["backend"] == backend]
    assert {r["test"] for r in recs} == {"prefill", "decode"}
    for r in recs:
        for key in ("backend", "model", "threads", "test", "tokens", "tok_s_mean", "tok_s_std",
                    "tok_s_samples", "bytes_per_token"):
            assert key in r, key
        assert len(r["tok_s_samples"]) == reps
        assert all(s > 0 for s in r["tok_s_samples"])
        assert min(r["tok_s_samples"]) <= r["tok_s_mean"] <= max(r["tok_s_samples"])
        assert r["threads"] == 1
        assert r["peak_rss_bytes"] > 0
        if r["test"] == "decode":
            assert r["tokens"] == 4
            assert r["achieved_GBps"] == pytest.approx(r["bytes_per_token"] * r["tok_s_mean"] / 1e9)
            assert r["bytes_per_token"] == rep["model"]["bytes_per_token"]
        else:
            assert r["tokens"] == 8 and r["ttft_ms_mean"] > 0
    return recs


@pytest.fixture
def tiny(tiny_model):
    return str(tiny_model(type="q8_0"))


@pytest.fixture
def tiny_spm(tiny_model):
    # What ctransformers loads: an SPM vocabulary and an explicit output.weight.
    return str(tiny_model(type="q8_0", tokenizer="spm", tied=False))


@needs_engine
def test_bench_slmprof_backend(tmp_path, tiny):
    proc, rep = _bench(tmp_path, "--model", tiny)
    assert proc.returncode == 0, proc.stderr
    assert rep["model"]["synthetic"] is True
    recs = _check_records(rep, "slmprof")
    assert all(r["ratio"] == pytest.approx(1.0) and r["ratio_best"] == pytest.approx(1.0) for r in recs)
    assert all(r["tok_s_best"] == max(r["tok_s_samples"]) for r in recs)
    # The cold load really read the file (or says why it could not).
    dec = [r for r in recs if r["test"] == "decode"][0]
    assert dec["load_cold_s"] > 0 and dec["load_warm_s"] > 0
    # The read bandwidth measured between repetitions, and decode's share of it.
    assert dec["read_bandwidth_GBps"] > 0
    assert dec["bandwidth_share"] == pytest.approx(dec["achieved_GBps"] / dec["read_bandwidth_GBps"])
    assert any("synthetic" in n for n in rep["notes"])


@needs_engine
def test_bench_tables(tmp_path, tiny):
    out = tmp_path / "bench.md"
    js = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "slmprof", "bench", "--model", tiny,
                           "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--no-cold", "-o", str(out),
                           "--json", str(js)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "| backend" in text and "t/s" in text and "peak RSS MB" in text
    assert "cold load skipped" in text
    assert report.read_json(js)["settings"]["cold"] is False


@needs_engine
@pytest.mark.peers
@pytest.mark.skipif(not HAVE_CTRANSFORMERS, reason="ctransformers is not installed")
def test_bench_interleaves_slmprof_and_ctransformers(tmp_path, tiny_spm):
    proc, rep = _bench(tmp_path, "--model", tiny_spm, "--backend", "slmprof",
                       "ctransformers")
    assert proc.returncode == 0, proc.stderr
    _check_records(rep, "slmprof")
    ct = _check_records(rep, "ctransformers")
    for r in ct:
        ref = [x for x in rep["records"] if x["backend"] == "slmprof" and x["test"] == r["test"]][0]
        assert r["ratio"] == pytest.approx(r["tok_s_mean"] / ref["tok_s_mean"])


@needs_engine
@pytest.mark.peers
@pytest.mark.skipif(not HAVE_CTRANSFORMERS, reason="ctransformers is not installed")
def test_a_backend_that_cannot_load_the_model_does_not_stop_the_others(tmp_path, tiny):
    # Tied embeddings and a gpt2 vocabulary: ctransformers cannot load it.
    proc, rep = _bench(tmp_path, "--model", tiny, "--backend", "slmprof",
                       "ctransformers")
    assert proc.returncode == 0, proc.stderr
    _check_records(rep, "slmprof")
    failed = [r for r in rep["records"] if r["backend"] == "ctransformers"]
    assert failed and all("tied" in r["error"] for r in failed)
    assert "ctransformers" in proc.stderr and "tied" in proc.stderr


@needs_engine
def test_missing_backend_names_the_install_command(tmp_path, monkeypatch, capsys, tiny):
    from slmprof import cli
    real = backends.unavailable_reason
    monkeypatch.setattr(backends, "unavailable_reason",
                        lambda n: (f"llama_cpp is not installed; install it with:  "
                                   f"{backends.INSTALL_COMMANDS['llama.cpp']}")
                        if backends.canonical_name(n) == "llama.cpp" else real(n))
    out = tmp_path / "b.json"
    code = cli.main(["bench", "--model", tiny, "-p", "4", "-n", "2", "-r", "1",
                     "-t", "1", "--no-cold", "--backend", "llama.cpp", "slmprof",
                     "--format", "json", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0
    assert "pip install llama-cpp-python==" in err
    rep = report.read_json(out)
    assert {r["backend"] for r in rep["records"] if "tok_s_mean" in r} == {"slmprof"}
    assert any(r["backend"] == "llama.cpp" and "not installed" in r["error"] for r in rep["records"])


def test_only_missing_backends_is_exit_3(tmp_path, monkeypatch, tiny):
    from slmprof import cli
    monkeypatch.setattr(backends, "unavailable_reason", lambda n: "not here; install it with: x")
    code = cli.main(["bench", "--model", tiny, "-p", "4", "-n", "2", "-r", "1",
                     "--backend", "llama.cpp", "--quiet", "-o", str(tmp_path / "x.md")])
    assert code == 3


@pytest.mark.parametrize("argv", [["--backend", "vllm"], ["--reps", "0"], ["-p", "0", "-n", "0"]])
def test_bad_arguments_are_usage_errors(argv, tiny):
    from slmprof import cli
    assert cli.main(["bench", "--model", tiny, *argv]) == 2


@pytest.mark.skipif(not HAVE_CTRANSFORMERS, reason="ctransformers is not installed")
def test_a_crashed_worker_is_reported_with_its_signal():
    w = backends.Worker("ctransformers")
    try:
        os.kill(w.hello["pid"], signal.SIGSEGV)
        with pytest.raises(backends.BackendError, match="SIGSEGV"):
            w.stats()
    finally:
        w.close()


def test_backend_names():
    assert backends.canonical_name("llama") == "llama.cpp"
    assert backends.canonical_name("CTransformers") == "ctransformers"
    with pytest.raises(ValueError, match="choose from"):
        backends.canonical_name("onnx")


def test_page_cache_fraction_of_a_file(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(os.urandom(1 << 20))
    frac = backends._page_cache_fraction(str(f))
    assert frac is None or 0.0 <= frac <= 1.0


def test_system_watch_on_a_fake_pi4(tmp_path):
    import shutil
    from pathlib import Path

    import numpy as np
    from slmprof.measure import procfs
    from slmprof.bench.harness import SystemWatch
    root = tmp_path / "pi4"
    shutil.copytree(Path(__file__).parent / "fake_roots" / "pi4", root)
    # An energy counter too, as RAPL lays it out, so energy per token has something to read.
    zone = root / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000000\n")
    watch = SystemWatch(hz=50, roots=procfs.Roots(proc=str(root / "proc"), sys=str(root / "sys")))
    watch.start()
    import time
    while not len(watch.sampler.samples()):   # the first record, so t0 is inside the series
        time.sleep(0.01)
    t0 = time.monotonic_ns()
    time.sleep(0.1)
    (zone / "energy_uj").write_text("3000000\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:      # until the sampler thread has read the new value
        if np.nanmax(watch.sampler.series("rapl_uj", 0)) >= 3e6:
            break
        time.sleep(0.01)
    t1 = time.monotonic_ns()
    time.sleep(0.1)
    out = watch.stop()
    cur = [int((root / f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq").read_text())
           for i in range(4)]
    assert out["cpu_freq_mhz_min"] == min(cur) / 1e3 and out["cpu_freq_mhz_max"] == max(cur) / 1e3
    temp = int((root / "sys/class/thermal/thermal_zone0/temp").read_text()) / 1e3
    assert out["temp_c_min"] == out["temp_c_max"] == temp
    raw = int((root / "sys/devices/platform/soc/soc:firmware/get_throttled").read_text(), 16)
    assert out["throttled"] == ", ".join(procfs.decode_throttled(raw))
    assert out["energy_between"](t0, t1) == pytest.approx(2.0, abs=1e-9)


def test_system_watch_says_why_figures_are_missing(tmp_path):
    from slmprof.measure import procfs
    from slmprof.bench.harness import SystemWatch
    (tmp_path / "sys").mkdir()
    watch = SystemWatch(hz=50, roots=procfs.Roots(proc=str(tmp_path), sys=str(tmp_path / "sys")))
    watch.start()
    out = watch.stop()
    text = " ".join(out["notes"])
    for what in ("CPU frequency", "temperature", "throttling", "energy"):
        assert what in text
    assert "energy_between" not in out


# --- compare ---------------------------------------------------------------------------------

@needs_engine
def test_compare_models_and_types(tmp_path, tiny_model):
    q8 = str(tiny_model(type="q8_0"))
    q4 = str(tiny_model(type="q4_0"))
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, "-m", "slmprof", "compare", "--models", f"{q8},{q4}",
                           "-t", "1", "-p", "4", "-n", "2", "-r", "1", "--format", "json",
                           "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rep = report.read_json(out, kind="compare")
    by = {r["model"]: r for r in rep["records"]}
    assert set(by) == {q8, q4}
    for r in by.values():
        assert r["file_bytes"] == os.path.getsize(r["model"])
        assert r["peak_rss_bytes"] > 0 and r["decode_tok_s"] > 0 and r["prefill_tok_s"] > 0
        assert r["synthetic"] is True and "perplexity" not in r
    # 8-bit weights stream more bytes per token than 4-bit ones.
    assert by[q8]["bytes_per_token"] > by[q4]["bytes_per_token"]


@needs_engine
def test_perplexity_scores_the_second_half_of_each_window(tiny_model):
    import numpy as np
    from slmprof.analysis.perplexity import perplexity
    from slmprof.engine.model import Model
    with Model.load(str(tiny_model(type="f32")), threads=1, ctx=64) as m:
        toks = m.tokenizer.encode("the quick brown fox jumps over the lazy dog " * 8, add_bos=False)
        result = perplexity(m, toks, 32)
        # By hand: each window from an empty context with BOS as its first token; positions
        # 16..30 predict tokens 17..31.
        nll = []
        for start in range(0, len(toks) - 31, 32):
            w = [m.tokenizer.bos_id] + toks[start + 1:start + 32]
            m.reset()
            logits = np.asarray(m.prefill(w, all_logits=True), np.float64)
            for i in range(16, 31):
                row = logits[i] - logits[i].max()
                nll.append(np.log(np.exp(row).sum()) - row[w[i + 1]])
    assert result.tokens == len(nll) == (len(toks) // 32) * 15
    assert result.perplexity == pytest.approx(float(np.exp(np.mean(nll))), rel=1e-9)


@pytest.mark.real_model
def test_compare_and_perplexity_give_the_same_figure(real_model_path, tmp_path):
    """`compare` and `perplexity` score the same text the same way (one implementation)."""
    from slmprof.analysis.perplexity import stdlib_text
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, "-m", "slmprof", "compare", "--models", str(real_model_path),
                           "-t", "2", "-p", "4", "-n", "2", "-r", "1", "--ppl-ctx", "64",
                           "--ppl-windows", "2", "--kl-tokens", "8", "--format", "json",
                           "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    from_compare = report.read_json(out, kind="compare")["records"][0]["perplexity"]
    text = tmp_path / "stdlib.txt"
    text.write_text(stdlib_text())
    proc = subprocess.run([sys.executable, "-m", "slmprof", "perplexity", "--model", str(real_model_path),
                           "--file", str(text), "--ctx", "64", "--max-windows", "2", "--threads", "2",
                           "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["perplexity"] == from_compare


@pytest.mark.real_model
@pytest.mark.slow
def test_compare_scores_each_model_in_its_own_tokens(real_model_path, gemma_model_path, tmp_path):
    """Two families (two vocabularies) in one `compare`: each model's perplexity is the one
    `perplexity` gives it alone."""
    from slmprof.analysis.perplexity import stdlib_text
    out = tmp_path / "compare.json"
    models = [str(real_model_path), str(gemma_model_path)]
    proc = subprocess.run([sys.executable, "-m", "slmprof", "compare", "--models", ",".join(models),
                           "-t", "2", "-p", "4", "-n", "2", "-r", "1", "--ppl-ctx", "64",
                           "--ppl-windows", "2", "--kl-tokens", "8", "--format", "json",
                           "-o", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr
    by = {r["model"]: r for r in report.read_json(out, kind="compare")["records"]}
    text = tmp_path / "stdlib.txt"
    text.write_text(stdlib_text())
    for path in models:
        proc = subprocess.run([sys.executable, "-m", "slmprof", "perplexity", "--model", path,
                               "--file", str(text), "--ctx", "64", "--max-windows", "2",
                               "--threads", "2", "--json"], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["summary"]["perplexity"] == by[path]["perplexity"], path
        assert by[path]["perplexity"] < 100 and by[path]["top1_vs_float"] > 0.5, by[path]


def test_stdlib_text_is_prose():
    from slmprof.analysis.perplexity import stdlib_text
    text = stdlib_text()
    assert len(text.split()) > 500
