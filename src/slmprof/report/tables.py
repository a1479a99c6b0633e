"""Tables people read and CSV scripts read: one row per record, columns chosen by each command.

    COLUMNS = [Column("backend", align="left"), Column("tok_s_mean", "t/s", ".2f")]
    print(format_table(records, COLUMNS, style="md"))     # GitHub markdown, as llama-bench prints
    text = render(report, "csv")                           # or md, plain, json
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from slmprof.measure.schema import to_json

FORMATS = ("md", "plain", "csv", "json")


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
