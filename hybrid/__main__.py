"""`python -m hybrid` and the `hybrid` console script. A Ctrl-C while the CLI is still being
imported is one line and exit status 130, as it is later (`hybrid.cli.main`)."""

import os
import sys


def run() -> None:
    try:
        from hybrid.cli import run as cli_run
    except KeyboardInterrupt:
        # Ended at once, as `hybrid.cli.run` ends after Ctrl-C: the interpreter's teardown
        # with half-imported modules (torch's threads) could end the process by the signal
        # instead of exit status 130 (seen: status -2 after this line was printed).
        print("error: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)
    cli_run()


if __name__ == "__main__":
    run()
