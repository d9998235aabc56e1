"""Reaching the MLflow tracking server from a task: bounded waiting and one clear error.

MLflow's client retries a failed request 7 times with exponential backoff (about 4 minutes
per request when the server is down) and waits up to 120 s for each answer, so a flow run
whose tracking server is gone would sit in its logging task for many minutes per call.
Inside `tracking_server(...)` the client's defaults are bounded (unless the user set the
variables): `MLFLOW_HTTP_REQUEST_MAX_RETRIES=2` (waits of 0 s and ~2 s),
`MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1`, `MLFLOW_HTTP_REQUEST_TIMEOUT=30` (per request, per
socket read, so large artifact uploads are not cut). A server that cannot be reached then
raises `TrackingUnavailable`, one line naming the tracking URI; tasks retry on that error
only (`retry_if_unreachable`), `TRACKING_RETRIES` times, `TRACKING_RETRY_DELAY_S` apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from hybrid.errors import HybridError

HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
TRACKING_RETRIES = 2
TRACKING_RETRY_DELAY_S = 5


class TrackingUnavailable(HybridError):
    """The MLflow tracking server could not be reached (refused, reset or timed out)."""


def bound_http_retries() -> None:
    """Set MLflow's HTTP retry/timeout variables to `HTTP_DEFAULTS` where the user did not."""
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def network_cause(exc: BaseException):
    """The requests connection/timeout error behind `exc` (MLflow wraps it), if any."""
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def tracking_server(doing: str) -> Iterator[None]:
    """Bound MLflow's HTTP waiting inside the block; an unreachable server raises
    `TrackingUnavailable("MLflow tracking server URI unreachable while DOING (...)")`."""
    bound_http_retries()
    try:
        yield
    except Exception as exc:
        cause = network_cause(exc)
        if cause is None:
            raise
        import mlflow

        refused = "refused" if "Connection refused" in str(cause) else type(cause).__name__
        raise TrackingUnavailable(
            f"MLflow tracking server {mlflow.get_tracking_uri()} unreachable while {doing} "
            f"({refused}, after {os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} HTTP "
            "retries); outputs on disk are kept, run again to log them") from exc


def retry_if_unreachable(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only when the tracking server was unreachable."""
    return isinstance(state.result(raise_on_failure=False), TrackingUnavailable)


#: Prefect task options of a task that talks to the tracking server: retried on
#: `TrackingUnavailable` only.
RETRIED = {"retries": TRACKING_RETRIES, "retry_delay_seconds": TRACKING_RETRY_DELAY_S,
           "retry_condition_fn": retry_if_unreachable}
