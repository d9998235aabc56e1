"""The one way into Ray for the library, the CLI and the flows.

`ensure_ray()` (and the context manager `ray_session()`) does one of three things:

- Ray is initialised already (a flow run's, a test's, the caller's): use it as is.
- `RAY_ADDRESS` names a cluster (`eval "$(python -m infra.stack env)"`, a head's
  `host:6379`, `auto`, `ray://host:10001`): connect to it, without `num_cpus`/`num_gpus`
  (the cluster's resources are what they are; Ray refuses those arguments there). The wait
  is bounded: `HYBRID_RAY_CONNECT_TIMEOUT` seconds (default 60) for the address to accept a
  TCP connection and for Ray to connect, else a `HybridError` naming the address, e.g.
  `Ray cluster at 127.0.0.1:6379 (RAY_ADDRESS) unreachable after 60 s: [Errno 111]
  Connection refused`. (Ray alone retries an unreachable GCS 20 times at ~40 s each.)
- Otherwise start a local Ray (no dashboard) that the caller shuts down: `ensure_ray`
  returns True then, and `ray_session` shuts it down at exit.

`quiet_session(shards)` is the `ray_session` of encoding and evaluation (all of this
machine's CPUs for a local start, workers' output not forwarded, the caller's logging
untouched). With one shard and no Ray to use (`local_only`) it starts none: the encoding
runs in the calling process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator

from hybrid.errors import HybridError

TIMEOUT_ENV = "HYBRID_RAY_CONNECT_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
# RAY_ADDRESS values that do not name a running cluster (`local` starts a new one).
_LOCAL = ("", "local")


def connect_timeout() -> float:
    """Seconds to wait for the cluster in RAY_ADDRESS (HYBRID_RAY_CONNECT_TIMEOUT, default 60)."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise HybridError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def cluster_address() -> str | None:
    """The cluster RAY_ADDRESS names, or None (unset, empty or `local`)."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    return None if address in _LOCAL else address


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port`, `[v6]:port` or `ray://host:port`; None for `auto` & co."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


def _dialed(address: str) -> str:
    """The host:port Ray itself dials for `address`: `auto` read from this machine's latest
    cluster, and a loopback host rewritten to the machine's IP (unless Ray runs with
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, as the local stack's clients do)."""
    if address.startswith("ray://"):
        return address
    from ray._private import services

    try:
        return services.canonicalize_bootstrap_address(address) or address
    except ConnectionError as exc:  # `auto` and no cluster on this machine
        raise HybridError(f"Ray cluster at {address} (RAY_ADDRESS) unreachable: "
                          f"{_one_line(exc)}") from None
    except Exception:  # noqa: BLE001 - Ray's own parsing decides; probe what was given
        return address


def _wait_for_port(address: str, timeout: float) -> None:
    """Until `timeout`, retry a TCP connection to what Ray will dial for `address`;
    HybridError if none succeeds."""
    dialed = _dialed(address)
    target = _host_port(dialed)
    if target is None:
        return
    via = "" if dialed == address else f"Ray dials {dialed}: "
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection(target, timeout=max(0.1, min(5.0, left))):
                return
        except socket.gaierror as exc:  # a name that does not resolve will not start to
            raise HybridError(f"Ray cluster at {address} (RAY_ADDRESS) unreachable: "
                              f"{via}{_one_line(exc)}") from None
        except OSError as exc:
            if time.monotonic() + 0.5 >= deadline:
                raise HybridError(f"Ray cluster at {address} (RAY_ADDRESS) unreachable after "
                                  f"{timeout:g} s: {via}{_one_line(exc)}") from None
        time.sleep(0.5)


def _connect_error(address: str, exc: BaseException) -> HybridError:
    causes, e = [], exc
    while e is not None and len(causes) < 5:
        causes.append(str(e))
        e = e.__cause__ or e.__context__
    text = " ".join(causes)
    if "Unauthenticated" in text or "InvalidAuthToken" in text:
        why = ("authentication token missing or incorrect (RAY_AUTH_MODE must be token and "
               "RAY_AUTH_TOKEN_PATH name the cluster's token file)")
    else:
        why = _one_line(exc)
    return HybridError(f"Ray cluster at {address} (RAY_ADDRESS) refused the connection: {why}")


def _connect(address: str, log_to_driver: bool, configure_logging: bool) -> None:
    import ray

    timeout = connect_timeout()
    start = time.monotonic()
    _wait_for_port(address, timeout)
    kwargs = {"address": address, "log_to_driver": log_to_driver}
    if not address.startswith("ray://"):
        kwargs["configure_logging"] = configure_logging
    # Ray retries the GCS handshake RAY_gcs_server_port_wait_time_s times, ~1 s each once the
    # port answers (default 20): keep it within what is left of the bound.
    key = "RAY_gcs_server_port_wait_time_s"
    saved = os.environ.get(key)
    if saved is None:
        os.environ[key] = str(max(1, int(timeout - (time.monotonic() - start))))
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure here is the cluster's/env's
        if isinstance(exc, TypeError):  # a bad argument: a bug
            raise
        with contextlib.suppress(Exception):
            ray.shutdown()
        raise _connect_error(address, exc) from None
    finally:
        if saved is None:
            os.environ.pop(key, None)


def ensure_ray(num_cpus: int | None = None, *, log_to_driver: bool = True,
               configure_logging: bool = True) -> bool:
    """Make Ray usable in this process (see module doc); True when this call started a local
    Ray, which the caller then shuts down. `num_cpus` applies to a local start only."""
    import ray

    if ray.is_initialized():
        return False
    address = cluster_address()
    if address is not None:
        _connect(address, log_to_driver, configure_logging)
        return False
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver,
             configure_logging=configure_logging)
    return True


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None, *, log_to_driver: bool = True,
                configure_logging: bool = True) -> Iterator[bool]:
    """`ensure_ray(...)` for a block: yields whether it started a local Ray, and shuts that
    one down at exit (a Ray it found or connected to is left as it is)."""
    import ray

    started = ensure_ray(num_cpus, log_to_driver=log_to_driver,
                         configure_logging=configure_logging)
    try:
        yield started
    finally:
        if started:
            ray.shutdown()


def local_only(shards: int) -> bool:
    """True when one shard is asked for and there is no Ray to use (none initialised in
    this process, no cluster in RAY_ADDRESS): the encoding then runs in this process,
    since a local Ray start costs more than it gives (~15-20 s per start on 2 cores, and
    a worker that loads the model again)."""
    if shards != 1 or cluster_address() is not None:
        return False
    ray = sys.modules.get("ray")  # not imported: not initialised
    return not (ray is not None and ray.is_initialized())


def quiet_session(shards: int | None = None) -> contextlib.AbstractContextManager[bool]:
    """`ray_session` as encoding and evaluation use it: a local start gets all of this
    machine's CPUs, workers' output is not forwarded to the driver and the caller's logging
    is left as it is. An evaluation holds one for its whole run, so that its many
    `encode_texts` calls share one Ray instead of each starting and stopping its own.
    `shards`: the shard count the block encodes with; when `local_only(shards)` no Ray is
    started (the block yields False)."""
    if shards is not None and local_only(shards):
        return contextlib.nullcontext(False)
    return ray_session(os.cpu_count(), log_to_driver=False, configure_logging=False)
