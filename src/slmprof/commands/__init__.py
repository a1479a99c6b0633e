"""One module per `python -m slmprof` command (see slmprof/cli.py)."""
