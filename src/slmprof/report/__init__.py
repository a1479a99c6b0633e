"""Results as people and scripts read them: one versioned JSON schema, tables, CSV, progress.

Every command that produces results (`layers`, `bench`, `compare`, `validate`, `calibrate`, ...)
builds one report with `make_report()` and writes it with `write_json()`; the analysis scripts and
`compare` read it back with `read_json()`. The shape is

    {
      "schema":  "slmprof/1",            # bumped only when a field changes meaning or goes away
      "kind":    "bench",                # which command made it
      "created": "2026-01-01T12:00:00Z",
      "slmprof_version": "0.1.0",
      "command": "python -m slmprof bench --model smollm2-135m",
      "machine": {...},                  # machine_info(): CPU, cores, memory, kernel, ISA path
      "model":   {...} or null,          # name, path, synthetic, type, sizes (the command's choice)
      "settings": {...},                 # the options that shaped the numbers (threads, tokens, ...)
      "records": [{...}, ...],           # one flat dict per row; keys documented by each command
      "summary": {...},                  # derived figures and one-line conclusions
      "notes":   ["...", ...]            # what could not be measured here, and why
    }

Adding keys is backwards compatible; readers ignore keys they do not know. Records are flat
(scalars, short lists of numbers) so that the same rows go to a table, CSV or a DataFrame.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from slmprof.errors import SlmprofError

SCHEMA = "slmprof/1"
SCHEMA_FAMILY = "slmprof/"
SCHEMA_VERSION = 1
FORMATS = ("md", "plain", "csv", "json")


class ReportError(SlmprofError, ValueError):
    """A results file that is not an slmprof report, or one of a newer schema."""


# --------------------------------------------------------------------------------------------
# Machine description

def _read_text(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def _cpu_model(cpuinfo: str) -> Optional[str]:
    for key in ("model name", "Model", "Hardware", "Processor"):
        for line in cpuinfo.splitlines():
            k, sep, v = line.partition(":")
            if sep and k.strip() == key and v.strip():
                return v.strip()
    return None


def _mem_total_bytes() -> Optional[int]:
    text = _read_text("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict:
    """What the numbers were measured on. Cheap (a few small /proc reads); never raises."""
    cpuinfo = _read_text("/proc/cpuinfo") or ""
    board = _read_text("/proc/device-tree/model") or _read_text("/sys/firmware/devicetree/base/model")
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info = {
        "hostname": platform.node(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(cpuinfo),
        "board": board.strip("\x00\n ") if board else None,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "mem_total_bytes": _mem_total_bytes(),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }
    try:  # the kernel path slmprof will use; absent while the C core is not built
        from slmprof.engine import quant
        info["isa_available"] = list(quant.available_isas())
        info["isa_active"] = quant.active_isa()
    except Exception as e:  # noqa: BLE001  (report, never fail, on a partial install)
        info["isa_available"] = None
        info["isa_active"] = None
        info["isa_note"] = f"kernel paths unknown: {type(e).__name__}: {e}"
    return info


# --------------------------------------------------------------------------------------------
# Reports (JSON)

def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "slmprof")):
        argv = ["python", "-m", "slmprof"] + argv[1:]
    return " ".join(argv)


def make_report(kind: str, records: Iterable[dict], *, machine: Optional[dict] = None,
                model: Optional[dict] = None, settings: Optional[dict] = None,
                summary: Optional[dict] = None, notes: Optional[Sequence[str]] = None,
                **extra: Any) -> dict:
    """One report in the shared schema. `machine` defaults to this machine."""
    from slmprof import __version__
    report = {
        "schema": SCHEMA,
        "kind": kind,
        "created": _utc_now(),
        "slmprof_version": __version__,
        "command": _command_line(),
        "machine": machine if machine is not None else machine_info(),
        "model": model,
        "settings": dict(settings or {}),
        "records": [dict(r) for r in records],
        "summary": dict(summary or {}),
        "notes": list(notes or []),
    }
    report.update(extra)
    return report


def _json_default(obj: Any):
    # numpy scalars and arrays, Paths, sets: everything a command naturally puts in a record.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _clean_floats(obj: Any) -> Any:
    # JSON has no NaN/Infinity; a value that could not be measured is null.
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_floats(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _clean_floats(obj.tolist())
    return obj


def to_json(report: dict) -> str:
    return json.dumps(_clean_floats(report), indent=2, default=_json_default) + "\n"


def write_json(report: dict, path_or_file) -> None:
    """Write a report to a path ('-' is stdout) or an open text file. Paths are written whole
    (temporary name, then rename) so a reader never sees half a file."""
    text = to_json(report)
    if hasattr(path_or_file, "write"):
        path_or_file.write(text)
        return
    if str(path_or_file) == "-":
        sys.stdout.write(text)
        return
    path = Path(path_or_file)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def validate_report(obj: Any, kind: Optional[str] = None, source: str = "report") -> dict:
    """Check that `obj` is a report this version reads; return it."""
    if not isinstance(obj, dict) or "schema" not in obj:
        raise ReportError(f"{source}: not an slmprof report (no 'schema' key)")
    schema = obj["schema"]
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_FAMILY):
        raise ReportError(f"{source}: schema {schema!r} is not an slmprof schema")
    try:
        version = int(schema[len(SCHEMA_FAMILY):])
    except ValueError:
        raise ReportError(f"{source}: schema {schema!r} has no version number") from None
    if version > SCHEMA_VERSION:
        raise ReportError(f"{source}: schema {schema!r} is newer than this slmprof reads "
                          f"({SCHEMA}); upgrade slmprof")
    if not isinstance(obj.get("records"), list):
        raise ReportError(f"{source}: 'records' is missing or not a list")
    if kind is not None and obj.get("kind") != kind:
        raise ReportError(f"{source}: a {obj.get('kind')!r} report, expected {kind!r}")
    return obj


def read_json(path_or_file, kind: Optional[str] = None) -> dict:
    """Read a report, checking the schema (and the kind, if given)."""
    if hasattr(path_or_file, "read"):
        text, source = path_or_file.read(), getattr(path_or_file, "name", "report")
    else:
        source = str(path_or_file)
        try:
            text = Path(path_or_file).read_text()
        except OSError as e:
            raise ReportError(f"{source}: cannot read: {e.strerror or e}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{source}: not valid JSON ({e.msg} at line {e.lineno})") from None
    return validate_report(obj, kind, source)


# --------------------------------------------------------------------------------------------
# Tables and CSV

@dataclass(frozen=True)
class Column:
    """One table column: which record key, its title, how to format it, where to align it."""
    key: str
    title: Optional[str] = None
    fmt: Any = None            # format spec ("{:.1f}", ".1f") or callable(value, record) -> str
    align: Optional[str] = None  # "left" | "right"; default right for numbers

    @property
    def heading(self) -> str:
        return self.title if self.title is not None else self.key

    def render(self, record: dict) -> str:
        value = record.get(self.key)
        if callable(self.fmt):
            return self.fmt(value, record)
        return format_value(value, self.fmt)


def format_value(value: Any, fmt: Optional[str] = None) -> str:
    """A cell: '' for missing, 'n/a' for NaN, numbers with `fmt` (or a sensible default)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if fmt:
        try:
            return fmt.format(value) if "{" in fmt else format(value, fmt)
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float):
        a = abs(value)
        if a == 0:
            return "0"
        if a >= 100:
            return f"{value:.1f}"
        if a >= 1:
            return f"{value:.2f}"
        if a >= 1e-3:
            return f"{value:.4f}"
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return " ".join(format_value(v, fmt) for v in value)
    return str(value)


def _as_columns(records: Sequence[dict], columns) -> list:
    if columns is None:
        keys: list = []
        for r in records:
            keys.extend(k for k in r if k not in keys)
        columns = keys
    return [c if isinstance(c, Column) else Column(str(c)) for c in columns]


def _is_numberish(text: str) -> bool:
    t = text.strip().rstrip("x%").replace(",", "")
    if t.startswith(("+", "-")):
        t = t[1:]
    if " ± " in t:
        t = t.split(" ± ")[0]
    try:
        float(t)
        return True
    except ValueError:
        return t in ("n/a", "")


def format_table(records: Sequence[dict], columns=None, style: str = "md",
                 title: Optional[str] = None) -> str:
    """A table of records: `style` "md" (GitHub markdown, what llama-bench prints) or "plain"."""
    cols = _as_columns(records, columns)
    head = [c.heading for c in cols]
    body = [[c.render(r) for c in cols] for r in records]
    if style == "md":  # a bare | would end the cell
        head = [h.replace("|", "\\|") for h in head]
        body = [[x.replace("|", "\\|") for x in row] for row in body]
    right = []
    for i, c in enumerate(cols):
        if c.align:
            right.append(c.align == "right")
        else:
            cells = [row[i] for row in body if row[i] != ""]
            right.append(bool(cells) and all(_is_numberish(x) for x in cells))
    widths = [max([len(head[i])] + [len(row[i]) for row in body]) for i in range(len(cols))]

    def line(cells, sep=" | ", edge=True):
        parts = [(c.rjust(w) if r else c.ljust(w)) for c, w, r in zip(cells, widths, right)]
        return ("| " + sep.join(parts) + " |") if edge else "  ".join(parts).rstrip()

    out = []
    if title:
        out.append(title)
        out.append("")
    if style == "md":
        out.append(line(head))
        out.append("| " + " | ".join(("-" * (w - 1) + ":") if r else "-" * w
                                     for w, r in zip(widths, right)) + " |")
        out.extend(line(row) for row in body)
    elif style == "plain":
        out.append(line(head, edge=False))
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(row, edge=False) for row in body)
    else:
        raise ValueError(f"unknown table style {style!r} (md or plain)")
    return "\n".join(out) + "\n"


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if value is None:
        return ""
    return value


def to_csv(records: Sequence[dict], columns=None) -> str:
    """CSV of the records: raw values (not the table's rounding), header = record keys."""
    keys = [c.key for c in _as_columns(records, columns)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for r in records:
        w.writerow([_csv_cell(r.get(k)) for k in keys])
    return buf.getvalue()


def write_text(text: str, output=None) -> None:
    """Write to a path, or stdout when `output` is None or '-'."""
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    elif hasattr(output, "write"):
        output.write(text)
    else:
        path = Path(output)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def render(report: dict, fmt: str, columns=None, title: Optional[str] = None,
           csv_columns=None) -> str:
    """The report in one of FORMATS: md/plain tables (with notes), csv (records), json (all)."""
    records = report.get("records", [])
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(records, csv_columns)
    if fmt in ("md", "plain"):
        text = format_table(records, columns, style=fmt, title=title)
        if report.get("notes"):
            text += "\n" + "\n".join(f"note: {n}" for n in report["notes"]) + "\n"
        return text
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def emit(report: dict, fmt: str = "md", output=None, columns=None, title: Optional[str] = None,
         csv_columns=None) -> None:
    """Render and write a report in one step (the usual last line of a command)."""
    write_text(render(report, fmt, columns, title, csv_columns), output)


# --------------------------------------------------------------------------------------------
# Statistics shared by the commands

def mean_std(samples: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (0 for fewer than two samples)."""
    xs = [float(x) for x in samples]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def format_bytes(n: Optional[float]) -> str:
    if n is None:
        return ""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------------------------
# Progress and messages

def stderr_is_tty(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress bar on stderr for work longer than a second.

        with Progress(total=len(items), what="quantizing", quiet=args.quiet) as bar:
            for item in items:
                ...
                bar.advance()

    Drawn only on a terminal, only once `delay` seconds have passed (short work prints nothing),
    and at most 10 times a second. Not on a terminal (CI, pipes), it prints nothing; `--quiet`
    silences it everywhere. `total=None` shows a counter without a bar.
    """

    def __init__(self, total: Optional[int] = None, what: str = "", quiet: bool = False,
                 stream=None, delay: float = 1.0, width: int = 28):
        self.total = total
        self.what = what
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = not quiet and stderr_is_tty(self.stream)
        self.delay = delay
        self.width = width
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False
        self._status = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def advance(self, n: int = 1, status: Optional[str] = None) -> None:
        self.done += n
        if status is not None:
            self._status = status
        self._maybe_draw()

    def set_status(self, status: str) -> None:
        self._status = status
        self._maybe_draw()

    def _maybe_draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and (now - self._start < self.delay or now - self._last_draw < 0.1):
            return
        self._last_draw = now
        elapsed = now - self._start
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            eta = (elapsed / frac - elapsed) if frac > 0 else float("nan")
            eta_s = f" eta {eta:4.0f}s" if math.isfinite(eta) and frac < 1 else ""
            text = f"{self.what} [{bar}] {self.done}/{self.total} {elapsed:4.0f}s{eta_s}"
        else:
            text = f"{self.what} {self.done} {elapsed:4.0f}s"
        if self._status:
            text += f"  {self._status}"
        cols = 100
        try:
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            pass
        self.stream.write("\r" + text[:cols - 1].ljust(cols - 1))
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * 99 + "\r")
            self.stream.flush()
            self._drawn = False


def say(message: str, quiet: bool = False, stream=None) -> None:
    """A status line for people (stderr, so stdout stays clean for tables and JSON)."""
    if not quiet:
        stream = stream or sys.stderr
        stream.write(message + "\n")
        stream.flush()


def add_output_arguments(parser, default_format: str = "md", formats=FORMATS) -> None:
    """The options every results-producing command shares."""
    parser.add_argument("--format", choices=formats, default=default_format,
                        help=f"output format (default {default_format}); json is the full report")
    parser.add_argument("--output", "-o", metavar="FILE", default=None,
                        help="write the output here instead of stdout")
    parser.add_argument("--json", metavar="FILE", dest="json_file", default=None,
                        help="also write the full JSON report to FILE")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress or status messages on stderr")
