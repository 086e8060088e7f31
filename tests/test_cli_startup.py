"""`mvq --help` and friends start without importing torch (about 2 s saved per call)."""

import subprocess
import sys

CHECK = """
import sys
from typer.testing import CliRunner
from tokenizer_cli.cli.app import app
for args in (["--help"], ["encode", "--help"], ["train", "tokenizer", "--help"], ["eval", "--help"], ["models"]):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (args, res.output)
print("torch" in sys.modules)
"""


def test_help_and_models_do_not_import_torch():
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False", "a module on the --help path imports torch at import time"
