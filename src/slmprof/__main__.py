import sys

try:
    from slmprof.cli import main
except KeyboardInterrupt:       # Ctrl-C while the package loads: the same one line as later
    sys.stderr.write("\nslmprof: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
