"""The CLI's contract: help everywhere, one-line errors with exit status 2."""

import subprocess
import sys

from hybrid.cli import app, main
from hybrid.errors import HybridError


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "version" in out


def test_unknown_command_is_usage_error():
    assert main(["no-such-command"]) == 2


def test_user_error_is_one_line_and_exit_2(capsys):
    @app.command("boom-for-test", hidden=True)
    def _boom() -> None:
        raise HybridError("bad.json: missing\n 'sentences'")

    try:
        assert main(["boom-for-test"]) == 2
    finally:
        app.registered_commands = [c for c in app.registered_commands if c.name != "boom-for-test"]
    err = capsys.readouterr().err.strip()
    assert err == "error: bad.json: missing 'sentences'"


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "hybrid", "version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip()[0].isdigit()


