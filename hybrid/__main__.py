"""`python -m hybrid` and the `hybrid` console script. A Ctrl-C while the CLI is still being
imported is one line and exit status 130, as it is later (`hybrid.cli.main`)."""

import sys


def run() -> None:
    try:
        from hybrid.cli import run as cli_run
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    cli_run()


if __name__ == "__main__":
    run()
