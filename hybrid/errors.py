"""The one error type users see.

Raise `HybridError` for anything caused by the user's input or environment (a bad file,
an unknown language, missing weights, no network). Its message is one line that names
the file or parameter and the problem; the CLI prints it as `error: <message>` and exits
with status 2. Bugs stay ordinary exceptions with tracebacks. Credentials in the message
(a URL's user:password, `token=...`) are masked (`hybrid.redact`).
"""


class HybridError(Exception):
    """A user-facing failure with a one-line message."""

    def __init__(self, message: str):
        from hybrid.redact import redact

        super().__init__(redact(" ".join(str(message).split())))
