"""`python -m slmprof <command>`: the command line.

Each command lives in its own module under slmprof/commands/ and exposes
    NAME, HELP        the subcommand name and its one-line help
    add_arguments(p)  fills an argparse parser (description and examples in its epilog)
    run(args) -> int  does the work and returns the exit code
Commands are discovered, so adding one touches no other file.
"""
import argparse
import importlib
import pkgutil
import sys

from slmprof import __version__
from slmprof.errors import SlmprofError

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_FAILURE = 1        # the check or run failed (validate found a wrong kernel, ...)
EXIT_USAGE = 2          # bad arguments or input (argparse uses 2 as well)
EXIT_UNAVAILABLE = 3    # the machine cannot provide what was asked
EXIT_INTERRUPTED = 130  # Ctrl-C; partial results were written


def _command_modules():
    import slmprof.commands as pkg
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"slmprof.commands.{info.name}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="slmprof",
        description="Profile small language models on this machine: speed, per-layer time, "
                    "and whether each layer is bound by memory or arithmetic.",
        epilog="Start with:  python -m slmprof layers     (per-layer table on the default model)\n"
               "             python -m slmprof sysinfo    (what this machine offers)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"slmprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           epilog=getattr(mod, "EXAMPLES", None),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("slmprof: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SlmprofError as e:
        print(f"slmprof {args.command}: error: {e}", file=sys.stderr)
        from slmprof.errors import UnavailableError
        return EXIT_UNAVAILABLE if isinstance(e, UnavailableError) else EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except OSError as e:
        print(f"slmprof {args.command}: error: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
