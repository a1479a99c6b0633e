"""Instructions per decoded and per prefilled token, slmprof against llama.cpp, on emulated
Raspberry Pi cores (Cortex-A72: Pi 4, plain NEON; Cortex-A76: Pi 5, NEON + dotprod).

Guest instructions are counted exactly by a TCG plugin of ours (insn_count.c) in Debian's
dynamic qemu-aarch64. slmprof runs as the arm64 root's python3 with the package that
install_in_root.sh installed there; llama.cpp is llama-bench cross-built by build_llama_cpp.sh.
Both run one thread and the same workload (llama-bench's: a prompt of random tokens; decoding
from an empty cache, one token at a time, no sampling). Three runs per engine, core and file:
    base     16 prompt tokens, 8 decoded
    prefill  80 prompt tokens, 8 decoded     -> prefill = (prefill - base) / 64
    decode   16 prompt tokens, 40 decoded    -> decode  = (decode - base) / 32
so start-up, loading and the first tokens cancel. Files: the real SmolLM2-135M (Q4_1) and its
copies requantized by slmprof (smollm2-135m:<type>), one per quantized weight type the package
supports (slmprof.engine.quant.QUANTIZED_TYPES).

Prints one table, writes JSON, and exits 1 when a slmprof count is more than 2% over its stored
figure (BASELINE) or above llama.cpp's for a type in HELD_TYPES.
    python instructions.py [--cores ...] [--types ...] [--json FILE] [--update-baseline]
Run it through run.sh, which builds what it needs and holds the arm64 root's lock.
"""
import argparse
import concurrent.futures
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from slmprof.engine import quant, registry

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SLMPROF_CI_CACHE", "/var/cache/slmprof-ci"))
ROOT = CACHE / "arm64-root"
GUEST_VENV = "opt/slmprof-venv"
GUEST_PYTHON = "usr/bin/python3"
LLAMA_DIR = CACHE / "llama-cpp"
BASELINE = HERE / "baseline.json"
CORES = ("cortex-a72", "cortex-a76")
CORE_NAMES = {"cortex-a72": "A72 (Pi 4)", "cortex-a76": "A76 (Pi 5)"}
RUNS = {"base": (16, 8), "prefill": (80, 8), "decode": (16, 40)}
HELD_TYPES = ("q4_0", "q4_1", "q8_0")  # slmprof must execute no more than llama.cpp for these
GROWTH = 0.02                            # a count over its stored figure by more fails
SCHEMA = "slmprof.instructions-per-token/1"


def per_token(counts):
    """(decode, prefill) instructions per token from the three runs' totals."""
    decode = (counts["decode"] - counts["base"]) / (RUNS["decode"][1] - RUNS["base"][1])
    prefill = (counts["prefill"] - counts["base"]) / (RUNS["prefill"][0] - RUNS["base"][0])
    return decode, prefill


def build_plugin():
    src = HERE / "insn_count.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = CACHE / "instructions" / f"insn_count-{digest}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-o", str(tmp), str(src)],
                       check=True)
        tmp.rename(out)
    return out


def qemu_version():
    out = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


def model_files(types):
    """type -> path of the real model in that type (requantized once into the cache)."""
    return {t: Path(registry.ensure_requantized(t, quiet=True)) for t in types}


def counted(plugin, core, argv, env):
    """Run argv under qemu-aarch64 as `core`; (instructions, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".count") as f:
        cmd = ["qemu-aarch64", "-L", str(ROOT), "-cpu", core, "-plugin", f"{plugin},out={f.name}"] + argv
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-3000:]}")
        return int(f.read().strip()), p.stdout


def slmprof_key(plugin, core, model, n_prompt, n_gen):
    """What a slmprof count depends on: the installed package's sources (install_in_root.sh's
    stamp), the workload, the file, the core, qemu and the plugin."""
    st = model.stat()
    return " ".join(["slmprof", (ROOT / GUEST_VENV / ".slmprof-sources").read_text().strip(),
                     hashlib.sha256((HERE / "workload.py").read_bytes()).hexdigest()[:16], core,
                     str(model), str(st.st_size), str(st.st_mtime_ns), str(n_prompt), str(n_gen),
                     qemu_version(), hashlib.sha256(plugin.read_bytes()).hexdigest()[:16]])


def slmprof_run(plugin, core, model, n_prompt, n_gen, cache, guest_path=()):
    """slmprof's count and kernel path, kept in `cache` unless guest_path puts other code first."""
    key = None if guest_path else slmprof_key(plugin, core, model, n_prompt, n_gen)
    if key in cache:
        return tuple(cache[key])
    site = [str(p) for p in (ROOT / GUEST_VENV / "lib").glob("python3*/site-packages")]
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
           "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([*map(str, guest_path), *site])}
    n, out = counted(plugin, core, [str(ROOT / GUEST_PYTHON), str(HERE / "workload.py"), str(model),
                                    str(n_prompt), str(n_gen)], env)
    if key is not None:
        cache[key] = (n, out.strip())
    return n, out.strip()


def llama_binary(core):
    return LLAMA_DIR / f"llama-bench-{core}"


def llama_run(plugin, core, model, n_prompt, n_gen, cache):
    """llama-bench's count, kept in `cache` (it changes only with the binary, the file or qemu)."""
    binary = llama_binary(core)
    st = model.stat()
    key = " ".join([binary.with_suffix(".key").read_text().strip() if binary.with_suffix(".key").exists()
                    else str(binary.stat().st_mtime_ns), core, str(model), str(st.st_size),
                    str(st.st_mtime_ns), str(n_prompt), str(n_gen), qemu_version(),
                    hashlib.sha256(plugin.read_bytes()).hexdigest()[:16]])
    if key in cache:
        return cache[key]
    n, _ = counted(plugin, core, [str(binary), "-m", str(model), "-t", "1", "-r", "1", "--no-warmup",
                                  "-p", str(n_prompt), "-n", str(n_gen), "-o", "json"], {"PATH": "/usr/bin:/bin"})
    cache[key] = n
    return n


def measure(cores, types, jobs, guest_path=()):
    plugin = build_plugin()
    files = model_files(types)
    cache_path = CACHE / "instructions" / "counts.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    jobs_list = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for core in cores:
            for t in types:
                for run, (p, g) in RUNS.items():
                    jobs_list.append((core, t, "slmprof", run,
                                      pool.submit(slmprof_run, plugin, core, files[t], p, g, cache, guest_path)))
                    jobs_list.append((core, t, "llama.cpp", run,
                                      pool.submit(llama_run, plugin, core, files[t], p, g, cache)))
        counts, isa = {}, {}
        for core, t, engine, run, fut in jobs_list:
            res = fut.result()
            if engine == "slmprof":
                res, isa[core] = res
            counts.setdefault((core, t, engine), {})[run] = res
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    if cache_path.exists():  # keep what another run stored meanwhile
        cache = {**json.loads(cache_path.read_text()), **cache}
    tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    tmp.replace(cache_path)
    rows = []
    for core in cores:
        for t in types:
            row = {"core": core, "type": t, "file": files[t].name, "slmprof_isa": isa.get(core)}
            for engine in ("slmprof", "llama.cpp"):
                c = counts[(core, t, engine)]
                decode, prefill = per_token(c)
                row[engine] = {"decode": decode, "prefill": prefill, "runs": c}
            rows.append(row)
    return rows


def table(rows):
    lines = ["| core | file | decode slmprof | decode llama.cpp | ratio | prefill slmprof | "
             "prefill llama.cpp | ratio |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, l = r["slmprof"], r["llama.cpp"]
        kind = "the real file" if r["type"] == "q4_1" else "requantized"
        lines.append(f"| {CORE_NAMES.get(r['core'], r['core'])} | {r['type'].upper()} ({kind}) | "
                     f"{s['decode'] / 1e6:.1f} | {l['decode'] / 1e6:.1f} | {s['decode'] / l['decode']:.2f} | "
                     f"{s['prefill'] / 1e6:.1f} | {l['prefill'] / 1e6:.1f} | {s['prefill'] / l['prefill']:.2f} |")
    return "\n".join(lines)


def baseline_key(row, phase):
    return f"{row['core']} {row['type']} {phase}"


def check(rows, baseline):
    """Failures, as sentences."""
    failures = []
    for r in rows:
        for phase in ("decode", "prefill"):
            got, ref = r["slmprof"][phase], baseline.get(baseline_key(r, phase))
            if ref is None:
                print(f"  no stored figure for '{baseline_key(r, phase)}' ({got / 1e6:.2f}M); "
                      f"--update-baseline stores it")
            elif got > ref * (1 + GROWTH):
                failures.append(f"{baseline_key(r, phase)}: {got / 1e6:.3f}M instructions per token, "
                                f"{got / ref - 1:+.2%} over the stored {ref / 1e6:.3f}M")
            if r["type"] in HELD_TYPES and got > r["llama.cpp"][phase]:
                failures.append(f"{baseline_key(r, phase)}: slmprof {got / 1e6:.3f}M > llama.cpp "
                                f"{r['llama.cpp'][phase] / 1e6:.3f}M instructions per token")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cores", nargs="+", default=list(CORES), choices=CORES)
    ap.add_argument("--types", nargs="+", default=list(quant.QUANTIZED_TYPES),
                    help="weight types (default: every quantized type slmprof computes)")
    ap.add_argument("--json", type=Path, default=CACHE / "instructions" / "instructions-per-token.json")
    ap.add_argument("--baseline", type=Path, default=BASELINE)
    ap.add_argument("--update-baseline", action="store_true",
                    help="store these slmprof figures as the ones to hold")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--guest-path", nargs="+", default=[], type=Path, metavar="DIR",
                    help="directories ahead of the root's installed package on the guest's path "
                         "(to count an aarch64 build of a work tree without installing it)")
    args = ap.parse_args()
    unknown = [t for t in args.types if t not in quant.WEIGHT_TYPES]
    if unknown:
        ap.error(f"unknown weight types {unknown} (slmprof computes {', '.join(quant.WEIGHT_TYPES)})")

    rows = measure(args.cores, args.types, args.jobs, args.guest_path)
    print(f"Instructions per token (millions), one thread, SmolLM2-135M; {qemu_version()}; "
          f"llama.cpp: llama-bench from the llama-cpp-python 0.3.36 sdist")
    print(table(rows))
    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else {}
    report = {"schema": SCHEMA, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": platform.node(), "qemu": qemu_version(), "runs": RUNS, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    if args.update_baseline:
        for r in rows:
            for phase in ("decode", "prefill"):
                baseline[baseline_key(r, phase)] = round(r["slmprof"][phase])
        args.baseline.write_text(json.dumps(dict(sorted(baseline.items())), indent=1) + "\n")
        print(f"stored the slmprof figures in {args.baseline}")
        return 0
    failures = check(rows, baseline)
    for f in failures:
        print("FAIL:", f)
    print("instructions per token:", "FAILED" if failures else "held (within "
          f"{GROWTH:.0%} of the stored figures, at most llama.cpp's for {', '.join(HELD_TYPES)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
