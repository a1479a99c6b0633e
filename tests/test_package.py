import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import slmprof
from slmprof import _core  # noqa: F401  (the C core imports)

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_help():
    assert slmprof.__version__
    out = subprocess.run([sys.executable, "-m", "slmprof", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "slmprof" in out.stdout


def test_no_command_is_a_usage_error():
    out = subprocess.run([sys.executable, "-m", "slmprof"], capture_output=True, text=True)
    assert out.returncode == 2


def _readme_commands():
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / "scripts" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_install_and_test_lines_are_there():
    """CI runs these lines verbatim (scripts/readme_commands.py --run install test)."""
    rc = _readme_commands()
    install, tests = rc.commands("install"), rc.commands("test")
    assert install[0].split()[0] == "./install.sh"
    assert any(line.split()[0].endswith("slmprof") and line.split()[1] == "layers" for line in install)
    assert any("-m pytest" in line for line in tests)
    with pytest.raises(ValueError, match="no heading"):
        rc.section_lines("# slmprof\n\n## Install\n\n    ./install.sh\n", rc.SECTIONS["install"])
    with pytest.raises(ValueError, match="no command"):
        rc.section_lines("## Tests\n\nno code here\n\n## Next\n\n    pytest\n", rc.SECTIONS["test"])
    fenced = "## Tests\n\n```\n.venv/bin/python -m pytest   # all\n```\n\n    b\n### more\n\n    c\n## Other\n    d\n"
    assert rc.section_lines(fenced, "Tests") == [".venv/bin/python -m pytest   # all", "b"]


def test_install_script_help():
    out = subprocess.run(["bash", str(ROOT / "install.sh"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "virtual environment" in out.stdout
    out = subprocess.run(["bash", str(ROOT / "install.sh"), "a", "b"], capture_output=True, text=True)
    assert out.returncode == 2
