"""The local stack on loopback: Prefect server, MLflow server, Ray head, and a Prefect worker.

`python -m infra.stack up|down|status|env|worker` (run from the project root):

- `up` starts whatever is not running yet (idempotent), waits until each answers its health
  check, and creates the process work pool `local`. Ports are picked once (the defaults when
  free, else any free port) and kept in `<state>/stack.json`, so a restart keeps the URLs.
- `worker` starts a process worker on pool `local` in the background (idempotent).
- `down` stops everything this state dir started (by pid and process group, nothing else).
- `status` prints one line per service; exit status 1 when one is down.
- `env` prints `export PREFECT_API_URL=... MLFLOW_TRACKING_URI=... RAY_ADDRESS=...` lines
  (`eval "$(python -m infra.stack env)"`).

Everything binds 127.0.0.1. The state dir (default `./.state`, `$HYBRID_STATE` or
`--state`) holds pids, logs, Prefect's home (database, result storage), MLflow's sqlite
store and artifact root.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
POOL = "local"
DEFAULT_PORTS = {"prefect": 4200, "mlflow": 5000, "ray": 6379}
# Ray (2.60) rewrites a loopback --node-ip-address (and a client's 127.0.0.1 RAY_ADDRESS) to the
# machine's routable IP, so its GCS, raylet and client server listen on every interface, unless
# this variable is 0 (meant for Windows/macOS, read by ray_constants at import on any OS): then
# the node keeps 127.0.0.1 and the C++ servers bind loopback only. The head and every client
# need it (a client without it dials the routable IP, where nothing listens); a head started
# so takes no other nodes, which the local stack never has.
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# What `env` exports (`Stack.env()`): the variables that point a client at a stack. Tests drop
# them at startup (tests/conftest.py): inherited from a shell, they would send every local
# `ray.init()` and MLflow client to the user's stack, or to a stopped one, where they hang.
CLIENT_ENV = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_AUTH_MODE",
              "RAY_AUTH_TOKEN_PATH", RAY_LOOPBACK_ENV, "PREFECT_HOME")
# Ray's dashboard serves the state API that Ray Train's placement-group cleaner polls (without
# it every training logs "Failed to query Ray Train Controller actor state" and a crashed
# controller's placement group is never released); its agent's HTTP port is fixed (52365)
# unless set, so two stacks on one machine would collide.
RAY_EXTRA_PORTS = {"ray_dashboard": 8265, "ray_agent": 52365}
SERVICES = ("prefect", "mlflow", "ray")
RAY_WORKER_PORTS = (10002, 19999)  # `ray start` default --min/--max-worker-port


class StackError(RuntimeError):
    """A service did not start or a port is taken; the message is one line."""


def _bin(name: str) -> str:
    """The console script `name` from this interpreter's environment."""
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else name


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (reaps it when it is our child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Stack:
    """The local stack whose state lives in `state` (pids, logs, ports, stores)."""

    state: Path

    def __post_init__(self) -> None:
        self.state = Path(self.state).absolute()

    # -- configuration -------------------------------------------------------------------
    @property
    def config_file(self) -> Path:
        return self.state / "stack.json"

    def ports(self, requested: dict[str, int | None] | None = None) -> dict[str, int]:
        """Ports from stack.json; else the requested/default ones when free, else free ones."""
        if self.config_file.exists():
            ports = json.loads(self.config_file.read_text())["ports"]
            if all(name in ports for name in RAY_EXTRA_PORTS):
                return ports
        else:
            ports = {}
        requested = requested or {}
        for name in SERVICES:
            if name in ports:
                continue
            want = requested.get(name)
            if want:
                if name == "ray" and RAY_WORKER_PORTS[0] <= want <= RAY_WORKER_PORTS[1]:
                    raise StackError(f"Ray port {want} lies in Ray's worker port range "
                                     f"{RAY_WORKER_PORTS[0]}-{RAY_WORKER_PORTS[1]}; pick another")
                ports[name] = want
            else:
                default = DEFAULT_PORTS[name]
                ports[name] = default if not port_open(default) else free_port()
                while name == "ray" and RAY_WORKER_PORTS[0] <= ports[name] <= RAY_WORKER_PORTS[1]:
                    ports[name] = free_port()
        for name, default in RAY_EXTRA_PORTS.items():
            if name not in ports:
                taken = port_open(default) or default in ports.values()
                ports[name] = free_port() if taken else default
        self.state.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps({"ports": ports}, indent=2) + "\n")
        return ports

    def env(self) -> dict[str, str]:
        """Variables a client (CLI, worker, flow run) needs to use this stack."""
        p = self.ports()
        return {
            "PREFECT_API_URL": f"http://{HOST}:{p['prefect']}/api",
            "MLFLOW_TRACKING_URI": f"http://{HOST}:{p['mlflow']}",
            "RAY_ADDRESS": f"{HOST}:{p['ray']}",
            # The head also requires this state dir's token from every client (defence in
            # depth: other users of this machine reach loopback too).
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.ray_token),
            RAY_LOOPBACK_ENV: "0",  # head and clients on 127.0.0.1 only (see above)
            "PREFECT_HOME": str(self.state / "prefect"),
        }

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env())
        env.update({
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": HOST,
            "PREFECT_WORKER_QUERY_SECONDS": env.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
            "PREFECT_WORKER_PREFETCH_SECONDS": env.get("PREFECT_WORKER_PREFETCH_SECONDS", "2"),
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
            "RAY_USAGE_STATS_ENABLED": "0",
            # MLflow's background job runner (GenAI jobs, huey consumers) is ~2 GB we do not need.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        })
        return env

    @property
    def ray_token(self) -> Path:
        return self.state / "ray" / "auth_token"

    def _ensure_ray_token(self) -> None:
        if not self.ray_token.exists():
            import secrets

            self.ray_token.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.ray_token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))

    @property
    def ray_temp(self) -> Path:
        # Ray's unix sockets must stay under ~107 characters, so not inside a deep state dir.
        tag = hashlib.sha1(str(self.state).encode()).hexdigest()[:10]
        return Path("/tmp") / f"hybrid-ray-{tag}"

    def commands(self) -> dict[str, list[str]]:
        p = self.ports()
        ml = self.state / "mlflow"
        return {
            "prefect": [_bin("prefect"), "server", "start", "--host", HOST,
                        "--port", str(p["prefect"]), "--analytics-off"],
            "mlflow": [_bin("mlflow"), "server", "--host", HOST, "--port", str(p["mlflow"]),
                       "--workers", "1",
                       "--backend-store-uri", f"sqlite:///{ml / 'mlflow.db'}",
                       "--serve-artifacts", "--artifacts-destination", str(ml / "artifacts")],
            "ray": [_bin("ray"), "start", "--head", "--block", "--node-ip-address", HOST,
                    "--port", str(p["ray"]), "--include-dashboard", "true", "--dashboard-host", HOST,
                    "--dashboard-port", str(p["ray_dashboard"]),
                    "--dashboard-agent-listen-port", str(p["ray_agent"]),
                    "--disable-usage-stats", "--temp-dir", str(self.ray_temp),
                    "--object-store-memory", str(512 * 1024 * 1024)],
            "worker": [_bin("prefect"), "worker", "start", "--pool", POOL, "--type", "process",
                       "--name", f"local-{os.getpid()}"],
        }

    def healthy(self, name: str) -> bool:
        p = self.ports()
        if name == "prefect":
            return _http_ok(f"http://{HOST}:{p['prefect']}/api/health")
        if name == "mlflow":
            return _http_ok(f"http://{HOST}:{p['mlflow']}/health")
        if name == "ray":
            return port_open(p["ray"]) and self.ray_temp.joinpath("ray_current_cluster").exists()
        return self.pid(name) is not None

    # -- processes -------------------------------------------------------------------------
    def pid_file(self, name: str) -> Path:
        return self.state / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The service's pid when it is running, else None."""
        f = self.pid_file(name)
        if not f.exists():
            return None
        try:
            pid = int(f.read_text().split()[0])
        except (ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def start(self, name: str) -> bool:
        """Start `name` unless it runs; True when it was started now."""
        if self.pid(name) is not None:
            return False
        if name in DEFAULT_PORTS and port_open(self.ports()[name]):
            raise StackError(f"port {self.ports()[name]} for {name} is taken by another "
                             f"process; remove {self.config_file} to pick new ports")
        for sub in ("pids", "logs", "prefect", "mlflow/artifacts"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        self._ensure_ray_token()
        log = self.log_file(name).open("ab")
        proc = subprocess.Popen(self.commands()[name], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.child_env(),
                                cwd=self.state, start_new_session=True)
        log.close()
        self.pid_file(name).write_text(f"{proc.pid}\n")
        return True

    def wait(self, name: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy(name):
                return
            if self.pid(name) is None:
                raise StackError(f"{name} exited during start; see {self.log_file(name)}")
            time.sleep(0.5)
        raise StackError(f"{name} not healthy after {timeout:.0f}s; see {self.log_file(name)}")

    def stop(self, name: str, timeout: float = 8.0) -> bool:
        """Stop `name`: its process group and every descendant (Ray workers start their own
        groups); SIGTERM, then SIGKILL after `timeout`. True when something was stopped."""
        pid = self.pid(name)
        self.pid_file(name).unlink(missing_ok=True)
        if pid is None:
            return False
        procs = _procs()
        mine = _descendants(pid, procs) | {p for p, (_, pgid, _) in procs.items() if pgid == pid}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            for p in mine:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, sig)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(_alive(p) for p in mine | {pid}):
                time.sleep(0.2)
            if not any(_alive(p) for p in mine | {pid}):
                break
        return True

    # -- the commands ------------------------------------------------------------------------
    def up(self, ports: dict[str, int | None] | None = None, log=print) -> None:
        self.ports(ports)
        started = [name for name in SERVICES if self.start(name)]
        for name in SERVICES:
            self.wait(name)
        self.ensure_pool()
        for name in SERVICES:
            log(f"{name:8s} {'started' if name in started else 'running'}  {self.url(name)}")

    def worker(self, log=print) -> None:
        if not self.healthy("prefect"):
            raise StackError("the Prefect server is not running; run `python -m infra.stack up`")
        self.ensure_pool()
        started = self.start("worker")
        time.sleep(1.0)
        if self.pid("worker") is None:
            raise StackError(f"worker exited; see {self.log_file('worker')}")
        log(f"worker   {'started' if started else 'running'}  pool {POOL!r}  "
            f"log {self.log_file('worker')}")

    def down(self, log=print) -> None:
        for name in ("worker", *reversed(SERVICES)):
            if self.stop(name):
                log(f"{name:8s} stopped")
        shutil.rmtree(self.ray_temp, ignore_errors=True)

    def url(self, name: str) -> str:
        env = self.env()
        return {"prefect": env["PREFECT_API_URL"].removesuffix("/api"),
                "mlflow": env["MLFLOW_TRACKING_URI"],
                "ray": f"{env['RAY_ADDRESS']}  dashboard http://{HOST}:{self.ports()['ray_dashboard']}",
                }.get(name, "")

    def status(self) -> dict[str, bool]:
        if not self.config_file.exists():
            return {name: False for name in (*SERVICES, "worker")}
        return {name: self.pid(name) is not None and self.healthy(name)
                for name in (*SERVICES, "worker")}

    def ensure_pool(self) -> None:
        """Create the process work pool `local` unless it exists."""
        prefect = _bin("prefect")
        env = self.child_env()
        inspect = subprocess.run([prefect, "work-pool", "inspect", POOL], env=env,
                                 capture_output=True, text=True)
        if inspect.returncode == 0:
            return
        made = subprocess.run([prefect, "work-pool", "create", POOL, "--type", "process"],
                              env=env, capture_output=True, text=True)
        if made.returncode != 0 and "already exists" not in made.stdout + made.stderr:
            raise StackError(f"cannot create work pool {POOL!r}: "
                             f"{(made.stdout + made.stderr).strip().splitlines()[-1:]}")


def _procs() -> dict[int, tuple[int, int, str]]:
    """{pid: (ppid, pgid, state)} of the live processes."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def _descendants(pid: int, procs: dict[int, tuple[int, int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for p, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(p)
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def default_state() -> Path:
    return Path(os.environ.get("HYBRID_STATE", ".state"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["up", "down", "status", "env", "worker"])
    ap.add_argument("--state", type=Path, default=None, help="state dir (default ./.state)")
    for name in SERVICES:
        ap.add_argument(f"--{name}-port", type=int, default=None)
    args = ap.parse_args(argv)
    stack = Stack(args.state or default_state())
    try:
        if args.command == "up":
            stack.up({n: getattr(args, f"{n}_port") for n in SERVICES})
        elif args.command == "worker":
            stack.worker()
        elif args.command == "down":
            stack.down()
        elif args.command == "env":
            if not stack.config_file.exists():
                raise StackError(f"no stack in {stack.state}; run `python -m infra.stack up`")
            for k, v in stack.env().items():
                print(f"export {k}={v}")
        else:
            st = stack.status()
            for name, ok in st.items():
                print(f"{name:8s} {'up' if ok else 'down':5s} {stack.url(name)}")
            return 0 if all(st[n] for n in SERVICES) else 1
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
