"""`slmprof calibrate`: measure this machine's ceilings and keep them as its machine profile."""
import sys

from slmprof import report
from slmprof.commands import _options
from slmprof.files import STDOUT
from slmprof.measure import calibrate

NAME = "calibrate"
HELP = "measure memory bandwidth and kernel throughput (the roofline's ceilings) for this machine"
DESCRIPTION = (
    "Measure read, copy and triad bandwidth for 1..N threads over buffers far larger than the\n"
    "last-level cache, cache-resident int8 dot-product throughput of every kernel path, the\n"
    "engine's own products (in cache, and one token streaming its weights from memory and from\n"
    "the last-level cache), its decode attention, f32 FMA throughput and the cost of the engine's\n"
    "wait for its threads. The result is cached as this machine's profile (keyed by CPU model,\n"
    "cores, memory and kernel) and reused by `layers` and `plan` until --force. The load is\n"
    "recorded while it measures: a calibration taken while the machine was busy is not saved\n"
    "(--keep-busy keeps it). One to two minutes on a small machine; the first `layers` run says\n"
    "how long before it starts. SLMPROF_LLC_BYTES sets the last-level cache the arrays are sized\n"
    "by (under user-mode emulation /sys shows the host's).")
EXAMPLES = """examples:
  python -m slmprof calibrate                   measure once, then show the cached profile
  python -m slmprof calibrate --force --json    measure again, print the profile as JSON
  python -m slmprof calibrate --json pi5.json   write the profile to a file as well
  python -m slmprof calibrate --export pi5.json save it for `plan --device pi5.json` elsewhere
"""


def add_arguments(p):
    p.add_argument("--force", action="store_true", help="measure again even if a profile is cached")
    report.add_json_argument(p, "the profile as JSON")
    p.add_argument("--export", metavar="FILE", type=_options.output_file,
                   help="also write the profile to FILE (for `plan --device FILE`)")
    _options.add_threads(p, "largest thread count to measure (default: every core)")
    p.add_argument("--keep-busy", action="store_true",
                   help="keep a calibration taken while the machine was busy as this machine's "
                        "figures (by default it is used for this run only and not saved)")


def progress_printer(stream=sys.stderr):
    """One line per step; on a terminal the line is rewritten in place."""
    tty = report.stderr_is_tty(stream)

    def show(done, total, label, text):
        line = f"calibrate [{done:2d}/{total}] {label:<38} {text:>14}"
        stream.write(("\r" + line + ("\n" if done == total else "")) if tty else line + "\n")
        stream.flush()
    return show


def run(args):
    to_stdout = args.json_file == STDOUT
    progress = None if args.quiet or to_stdout else progress_printer()
    measure_args = {"threads_max": args.threads} if args.threads else {}
    profile, was_cached = calibrate.get_profile(force=args.force or bool(args.threads),
                                                progress=progress, keep_busy=args.keep_busy,
                                                **measure_args)
    if args.export:
        path = calibrate.export_profile(profile, args.export)
        report.say(f"exported to {path}", args.quiet or to_stdout)
    if profile.get("not_saved"):
        report.say(f"slmprof calibrate: warning: the profile was not saved "
                   f"({profile['not_saved']}); the next run measures again")
    if args.json_file:
        saved = {k: v for k, v in profile.items() if k != "not_saved"}
        report.write_json(report.stamp(calibrate.KIND, saved), args.json_file)
        if to_stdout:
            return
    if not args.quiet:
        where = calibrate.profile_path(profile["key"])
        if not profile.get("not_saved"):
            print(("cached profile (use --force to measure again): " if was_cached else
                   f"measured in {profile.get('seconds', 0):.1f} s, saved to ") + str(where))
    for line in calibrate.summary_lines(profile):
        print(line)
