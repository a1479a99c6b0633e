"""`slmprof calibrate`: measure this machine's ceilings and keep them as its machine profile."""
import json
import sys

from slmprof.measure import calibrate

NAME = "calibrate"
HELP = "measure memory bandwidth and kernel throughput (the roofline's ceilings) for this machine"
DESCRIPTION = (
    "Measure read, copy and triad bandwidth for 1..N threads over buffers far larger than the\n"
    "last-level cache, cache-resident int8 dot-product throughput of every kernel path, f32 FMA\n"
    "throughput and the cost of the engine's wait for its threads. The result is cached as this\n"
    "machine's profile (keyed by CPU model, cores, memory and kernel) and reused by `layers` and\n"
    "`plan` until --force. The load is recorded while it measures: a calibration taken while the\n"
    "machine was busy is not saved (--keep-busy keeps it). Takes well under a minute.")
EXAMPLES = """examples:
  python -m slmprof calibrate                 measure once, then show the cached profile
  python -m slmprof calibrate --force --json  measure again, print the profile as JSON
  python -m slmprof calibrate --export pi5.json   save it for `plan --device pi5.json` elsewhere
"""


def add_arguments(p):
    p.add_argument("--force", action="store_true", help="measure again even if a profile is cached")
    p.add_argument("--json", action="store_true", help="print the profile as JSON")
    p.add_argument("--export", metavar="FILE", help="also write the profile to FILE")
    p.add_argument("--threads", type=int, default=None,
                   help="largest thread count to measure (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--keep-busy", action="store_true",
                   help="keep a calibration taken while the machine was busy as this machine's "
                        "figures (by default it is used for this run only and not saved)")


def progress_printer(stream=sys.stderr):
    """One line per step; on a terminal the line is rewritten in place."""
    tty = stream.isatty()

    def show(done, total, label, text):
        line = f"calibrate [{done:2d}/{total}] {label:<38} {text:>14}"
        stream.write(("\r" + line + ("\n" if done == total else "")) if tty else line + "\n")
        stream.flush()
    return show


def run(args):
    if args.threads is not None and args.threads < 1:
        print("slmprof calibrate: error: --threads must be at least 1", file=sys.stderr)
        return 2
    progress = None if args.quiet or args.json else progress_printer()
    measure_args = {"threads_max": args.threads} if args.threads else {}
    profile, was_cached = calibrate.get_profile(force=args.force or bool(args.threads),
                                                progress=progress, keep_busy=args.keep_busy,
                                                **measure_args)
    if profile.get("not_saved"):
        print(f"slmprof calibrate: warning: not saved as this machine's profile: "
              f"{profile['not_saved']}", file=sys.stderr)
    if args.export:
        path = calibrate.export_profile(profile, args.export)
        if not args.json and not args.quiet:
            print(f"exported to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(profile, indent=1, sort_keys=True))
        return 0
    if not args.quiet:
        where = calibrate.profile_path(profile["key"])
        print(("cached profile (use --force to measure again): " if was_cached else
               f"measured in {profile.get('seconds', 0):.1f} s, NOT saved" if profile.get("not_saved")
               else f"measured in {profile.get('seconds', 0):.1f} s, saved to ") +
              ("" if profile.get("not_saved") and not was_cached else str(where)))
    for line in calibrate.summary_lines(profile):
        print(line)
    return 0
