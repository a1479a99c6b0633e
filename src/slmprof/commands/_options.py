"""The arguments several commands share, each defined and checked in one place, before any work.

argparse `type=` functions check one value as it is parsed (a bad one is a one-line usage
error naming the option); `check_*` functions check what needs several arguments or the model
file, and raise UsageError. cli.main runs `check_common` on every command, then the command's
own `check(args)`, then `run(args)`.
"""
import argparse
import math
import os

from slmprof import _core
from slmprof.engine import quant, registry
from slmprof.engine.gguf import GGUFFile, describe_model
from slmprof.engine.model import default_threads
from slmprof.errors import UsageError
from slmprof.measure import counters, events
from slmprof.files import STDOUT, check_writable, is_special
from slmprof.report.outputs import OutputPath, output_file  # noqa: F401  (commands use output_file)
from slmprof.report.progress import say

MAX_HZ = 10000          # the sampler's fastest rate
MAX_CTX = _core.MAX_CTX


def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def integer(lo=None, hi=None, unit="", why=""):
    """An argparse type: an integer in [lo, hi] (`unit` and `why` name the bound)."""
    def parse(text):
        v = _number(text, int)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if hi is None:
                raise argparse.ArgumentTypeError(f"must be at least {lo}{unit} (got {v})")
            if lo is None:
                raise argparse.ArgumentTypeError(f"must be at most {hi}{unit}{why} (got {v})")
            raise argparse.ArgumentTypeError(f"must be {lo} to {hi}{unit}{why} (got {v})")
        return v
    parse.__name__ = "integer"
    return parse


def number(lo=None, hi=None, lo_open=False):
    """An argparse type: a finite float in [lo, hi] ((lo, hi] with lo_open)."""
    def parse(text):
        v = _number(text, float)
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'above' if lo_open else 'at least'} {lo:g} (got {v:g})")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi:g} (got {v:g})")
        return v
    parse.__name__ = "number"
    return parse


threads = integer(1, _core.MAX_THREADS, why=", the engine's limit")
context = integer(1, MAX_CTX, why=", the engine's longest context")
prompt_tokens = integer(1, MAX_CTX, why=", the engine's longest context")
gen_tokens = integer(0, MAX_CTX, why=", the engine's longest context")
sample_rate = integer(0, MAX_HZ, " Hz")


def text(value):
    """An argparse type: text that is not empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give some text")
    return value


def model(value):
    """An argparse type: a registry name or a GGUF file (not a directory)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give a model name (see `slmprof models`) or a GGUF file")
    path = os.path.expanduser(value)
    if os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"{value} is a directory; give a GGUF file in it, or a "
                                         "model name from `slmprof models`")
    if (os.sep in value or value.endswith(".gguf")) and not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"model file {value} does not exist")
    return value


def input_file(value):
    """An argparse type: a file that exists and can be read."""
    if not value:
        raise argparse.ArgumentTypeError("is empty; give a file")
    if os.path.isdir(value):
        raise argparse.ArgumentTypeError(f"{value} is a directory, not a file")
    if not os.path.exists(value):
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    if not os.access(value, os.R_OK):
        raise argparse.ArgumentTypeError(f"{value}: permission denied")
    return value


def add_threads(p, help="engine threads (default: every usable core)", short=False):
    p.add_argument(*(("--threads", "-t") if short else ("--threads",)), type=threads, default=None,
                   metavar="N", help=help)


def add_model(p, default, help=None, short=False):
    p.add_argument(*(("--model", "-m") if short else ("--model",)), type=model, default=default,
                   help=help or f"registry name or GGUF path (default {default})")


# ------------------------------------------------------------------------------------------
# Checks after parsing


def threads_note(n, usable):
    """What a thread count above the usable cores means, or None when it fits. The one place
    the rule lives: the extra threads share cores with the others."""
    if n <= usable:
        return None
    return (f"--threads {n} is more than the {usable} usable core{'s' if usable != 1 else ''}: "
            f"threads will share cores and wait on each other")


def _outputs(args):
    for name, value in vars(args).items():
        for v in (value if isinstance(value, list) else [value]):
            if isinstance(v, OutputPath):
                yield name, v


def check_outputs(args):
    """Every output path can be written, and no two outputs name the same file."""
    seen = {}
    for name, path in _outputs(args):
        check_writable(path)
        if path == STDOUT or is_special(path):
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise UsageError(f"--{seen[key].replace('_', '-')} and --{name.replace('_', '-')} "
                             f"both write {path}")
        seen[key] = name


def check_common(args):
    """What every command checks: its output paths, and its thread count."""
    check_outputs(args)
    n = getattr(args, "threads", None)
    if isinstance(n, int):
        note = threads_note(n, default_threads())
        if note:
            say(f"slmprof {args.command}: warning: {note}", getattr(args, "quiet", False))


def check_kernel_path():
    """SLMPROF_ISA naming a kernel path this machine cannot run is refused before any work,
    with the reason `sysinfo` gives (the model would fail to load only after the setup)."""
    quant.active_isa()


def event_names(arg):
    """--events: None (the core's defaults), [] (time only: 'none') or the names given."""
    if arg is None:
        return None
    if arg.strip().lower() in ("none", ""):
        return []
    return [e.strip() for e in arg.split(",") if e.strip()]


def check_events(names):
    """Unknown event names are a usage error, found before the run (no counter is opened)."""
    if names:
        try:
            events.resolve(names, counters.detect_core().core)
        except ValueError as e:
            raise UsageError(f"--events: {e}") from None


def trained_context(name):
    """The context a model was trained for (from its file header, or the registry's shape of a
    name not yet fetched), or None when the name is unknown (the run reports that)."""
    name = str(name)
    path = os.path.expanduser(name)
    if os.path.isfile(path):
        with GGUFFile(path) as gf:
            return describe_model(gf).shape.ctx
    if name.startswith(registry.SYNTH_PREFIX):
        shape = registry.SHAPES.get(name[len(registry.SYNTH_PREFIX):].split(":")[0])
    else:
        shape = registry.SHAPES.get(name.split(":")[0])
    return shape.ctx if shape is not None else None


def check_positions(model_name, positions, what):
    """Positions a run processes (prompt + generated) must lie within the model's trained
    context: past it the model never learnt positions, and the run would take long for
    figures of no use."""
    trained = trained_context(model_name)
    if trained is not None and positions > trained:
        raise UsageError(f"{what}: {positions} positions, more than the {trained} that "
                         f"{model_name} was trained for")


def context_note(model_name, ctx):
    """A warning when --ctx is larger than the model's trained context, or None."""
    trained = trained_context(model_name)
    if trained is not None and ctx > trained:
        return (f"--ctx {ctx} is more than the {trained} positions {model_name} was trained for; "
                f"text past position {trained} degrades")
    return None
