"""`python -m slmprof <command>`: the command line.

Each command lives in its own module under slmprof/commands/ and exposes
    NAME, HELP        the subcommand name and its one-line help
    DESCRIPTION       what it does (its --help text)
    EXAMPLES          example command lines (the end of its --help)
    add_arguments(p)  fills an argparse parser
    check(args)       optional: checks that need several arguments or the model file
    run(args)         does the work; raises an error (slmprof.errors) when it cannot; returns
                      None, or an exit status that is the command's result (stat passes its
                      child's through)
Commands are discovered, so adding one touches no other file.

main() is the one place exit codes are chosen and errors are printed: one line each, never a
traceback for an error slmprof raises on purpose. Every argument is checked before any work.
"""
import argparse
import errno
import importlib
import os
import pkgutil
import sys

from slmprof import __version__
from slmprof import commands as commands_package
from slmprof.commands import _options
from slmprof.errors import (CheckFailed, CommandNotStarted, OutputError, SlmprofError,
                            UnavailableError, UsageError)
from slmprof.report.outputs import add_quiet

# Exit codes shared by every command.
EXIT_OK = 0
EXIT_FAILURE = 1        # the run failed: a check did not hold, an output could not be written
EXIT_USAGE = 2          # bad arguments or input (argparse's code too)
EXIT_UNAVAILABLE = 3    # the machine cannot provide what was asked
EXIT_NOT_EXECUTABLE = 126  # stat: the command could not be run (as a shell reports it)
EXIT_NOT_FOUND = 127    # stat: no such command
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)


def exit_code(error: BaseException) -> int:
    """The exit code of an error that ends a command."""
    if isinstance(error, (KeyboardInterrupt, InterruptedError)):
        return EXIT_INTERRUPTED
    if isinstance(error, CommandNotStarted):     # as a shell reports it
        return EXIT_NOT_FOUND if error.errno == errno.ENOENT else EXIT_NOT_EXECUTABLE
    if isinstance(error, UnavailableError):
        return EXIT_UNAVAILABLE
    if isinstance(error, (CheckFailed, OutputError)):
        return EXIT_FAILURE
    if isinstance(error, SlmprofError):
        return EXIT_USAGE
    return EXIT_FAILURE     # an OSError from the system (a file that vanished, a full pipe)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line ('slmprof CMD: error: ...') raised as UsageError, so
    main() reports them like every other error (argparse would print the usage and exit)."""

    def error(self, message):
        error = UsageError(f"{message}; see {self.prog} --help")
        error.prog = self.prog
        raise error


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands_package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"slmprof.commands.{info.name}")


def build_parser():
    parser = ArgumentParser(
        prog="slmprof",
        description="Profile small language models on this machine: speed, per-layer time, "
                    "and whether each layer is bound by memory or arithmetic.",
        epilog="Start with:  python -m slmprof layers     (per-layer table on the default model)\n"
               "             python -m slmprof sysinfo    (what this machine offers)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"slmprof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.DESCRIPTION,
                           epilog=mod.EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        add_quiet(p)
        p.set_defaults(func=mod.run, check=getattr(mod, "check", None))
    return parser


def _report(prog, error):
    text = " ".join(str(error).split()) or type(error).__name__
    sys.stderr.write(f"{prog}: error: {text}\n")
    sys.stderr.flush()


def main(argv=None):
    parser = build_parser()
    prog = "slmprof"
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        prog = f"slmprof {args.command}"
        _options.check_common(args)
        if args.check is not None:
            args.check(args)
        return int(args.func(args) or EXIT_OK)
    except (KeyboardInterrupt, InterruptedError):
        sys.stderr.write(f"\n{prog}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader of our stdout went away (`| head`): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except (SlmprofError, OSError) as e:
        _report(getattr(e, "prog", prog), e)
        return exit_code(e)


if __name__ == "__main__":
    raise SystemExit(main())
