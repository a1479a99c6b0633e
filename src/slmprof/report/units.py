"""Numbers for people: the one byte formatter, and the statistics the commands share."""
from __future__ import annotations

import math
from typing import Optional, Sequence

_DECIMAL = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))
_BINARY = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_bytes(n: Optional[float], binary: bool = False, digits: int = 2, unit: Optional[str] = None,
                 missing: str = "") -> str:
    """'98.36 MB' (decimal units, as disk and bandwidth figures are given), or with binary=True
    '1.5 MiB' (as memory sizes are given by the kernel and `free`). unit: always this one
    ('MB', 'GiB', ...). None or NaN gives `missing`."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return missing
    units = _BINARY if binary else _DECIMAL
    if unit is not None:
        scale = dict(units + ((("B", 1),)))[unit]
        return f"{n / scale:.{digits}f} {unit}"
    for name, scale in units:
        if abs(n) >= scale:
            return f"{n / scale:.{digits}f} {name}"
    return f"{int(n)} B"


def mb(value, record=None) -> str:
    """A table cell in MB without the unit (the column title carries it); '' when missing."""
    return "" if value is None else f"{value / 1e6:.1f}"


def mean_std(samples: Sequence[float]) -> tuple:
    """Mean and sample standard deviation (0 for fewer than two samples)."""
    xs = [float(x) for x in samples]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
