import subprocess
import sys

import slmprof
from slmprof import _core  # noqa: F401  (the C core imports)


def test_version_and_help():
    assert slmprof.__version__
    out = subprocess.run([sys.executable, "-m", "slmprof", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "slmprof" in out.stdout


def test_no_command_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "slmprof"], capture_output=True, text=True)
    assert out.returncode == 2
