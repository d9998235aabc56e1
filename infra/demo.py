"""The demo: the whole pipeline through a real Prefect deployment run, on the local stack.

`python -m infra.demo` (what `make demo` runs), from the project root:
1. starts the local stack (Prefect server, MLflow server, Ray head; `infra.stack up`) and a
   process worker on pool `local`;
2. `prefect deploy --all` (prefect.yaml), unless this stack already has the deployment from
   the same project directory, prefect.yaml and flows/ (`<state>/deployed.sha256`);
3. `prefect deployment run 'hybrid-pipeline/quick'`: me5-small, the XQuAD-R train split,
   the quick profile, hybrid batches; evaluation on held-out XQuAD-R and MLQA-R;
4. follows the run (the worker's log: steps, progress bars) until it ends, then prints the
   report and heatmap paths, the MLflow run URL and the registry alias it got.
The stack keeps running afterwards (UIs at the printed URLs); `python -m infra.stack down`
stops it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from infra.stack import Stack, StackError, default_state

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOISE = re.compile(r"gcs_client|FutureWarning|UserWarning|warnings.warn|color_warning|"
                   r"PlacementGroupCleaner|PreemptionWatcher|^\s+\^")


def say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _prefect(args: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, **kw)


def _ask(api: str, request):
    """`await request(client)` with a Prefect client of the server at `api`."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def ask():
        async with get_client() as client:
            return await request(client)

    with temporary_settings({PREFECT_API_URL: api}):
        return asyncio.run(ask())


def flow_run_state(run_id: str, api: str) -> str:
    state = _ask(api, lambda client: client.read_flow_run(run_id)).state
    return state.type.value if state else "PENDING"


def deploy_key() -> str:
    """sha256 of what `prefect deploy --all` records: the project root (the flows' working
    directory), prefect.yaml and the flow modules (their signatures are the deployments'
    parameter schemas)."""
    h = hashlib.sha256(str(ROOT).encode() + b"\0")
    for path in [ROOT / "prefect.yaml", *sorted((ROOT / "flows").glob("*.py"))]:
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def deployment_exists(name: str, api: str) -> bool:
    try:
        _ask(api, lambda client: client.read_deployment_by_name(name))
    except Exception:  # ObjectNotFound, or anything else: deploy again
        return False
    return True


def deploy_needed(stack: Stack, deployment: str, api: str) -> bool:
    """False when `stack` was last deployed from the same project directory, prefect.yaml
    and flows/ (`deploy_key`) and still has `deployment`: a re-run then skips
    `prefect deploy --all` (6 s on a quiet machine, a minute under load)."""
    marker = stack.state / "deployed.sha256"
    try:
        same = marker.read_text(encoding="utf-8").strip() == deploy_key()
    except OSError:
        return True
    return not (same and deployment_exists(deployment, api))


def param_value(params: list[str], key: str, default: str) -> str:
    """The value of `key=VALUE` in `-p` flow parameters, read as Prefect reads it (JSON, else
    the raw string)."""
    for p in params:
        name, _, raw = p.partition("=")
        if name == key:
            try:
                return str(json.loads(raw))
            except json.JSONDecodeError:
                return raw
    return default


class LogFollower:
    """Prints what a log file gains (the last frame of each progress-bar line)."""

    def __init__(self, path: Path):
        self.path, self.pos = path, path.stat().st_size if path.exists() else 0

    def poll(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            chunk = f.read()
        self.pos += len(chunk)
        for line in chunk.decode("utf-8", "replace").splitlines():
            line = ANSI.sub("", line.split("\r")[-1]).rstrip()
            if line.strip() and not NOISE.search(line):
                print("  | " + line[:200], flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infra.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--deployment", default="hybrid-pipeline/quick")
    ap.add_argument("--param", "-p", action="append", default=[],
                    help="flow parameter key=JSON, passed to `prefect deployment run -p`")
    ap.add_argument("--timeout", type=float, default=40 * 60, help="seconds to wait for the run")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    stack = Stack(default_state())
    try:
        say("starting the local stack (Prefect, MLflow, Ray head) on 127.0.0.1")
        stack.up(log=lambda m: say(m))
        stack.worker(log=lambda m: say(m))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = {**os.environ, **stack.env()}
    if deploy_needed(stack, args.deployment, env["PREFECT_API_URL"]):
        say("prefect deploy --all")
        key = deploy_key()
        r = _prefect(["--no-prompt", "deploy", "--all"], env)
        if r.returncode != 0:
            print(r.stdout[-2000:] + r.stderr[-2000:], file=sys.stderr)
            return 1
        (stack.state / "deployed.sha256").write_text(key + "\n", encoding="utf-8")
    else:
        say("deployments up to date (project dir, prefect.yaml and flows/ as at the last deploy)")
    follower = LogFollower(stack.log_file("worker"))
    say(f"prefect deployment run '{args.deployment}'")
    run_args = ["deployment", "run", args.deployment]
    for p in args.param:
        run_args += ["-p", p]
    r = _prefect(run_args, env)
    m = re.search(r"UUID:\s*([0-9a-f-]{36})", r.stdout)
    if r.returncode != 0 or not m:
        print(r.stdout[-2000:] + r.stderr[-2000:], file=sys.stderr)
        return 1
    run_id = m.group(1)
    say(f"flow run {run_id}: {stack.url('prefect')}/runs/flow-run/{run_id}")
    state = "PENDING"
    while time.monotonic() - t0 < args.timeout:
        follower.poll()
        state = flow_run_state(run_id, env["PREFECT_API_URL"])
        if state in TERMINAL:
            break
        time.sleep(3)
    follower.poll()
    minutes = (time.monotonic() - t0) / 60
    if state != "COMPLETED":
        say(f"flow run ended {state} after {minutes:.1f} min; worker log: "
            f"{stack.log_file('worker')}")
        return 1
    latest = ROOT / param_value(args.param, "results_dir", "runs/pipeline") / "latest.json"
    info = json.loads(latest.read_text(encoding="utf-8")) if latest.exists() else {}
    say(f"done in {minutes:.1f} min")
    for bench, path in info.get("reports", {}).items():
        print(f"report  {bench}: {path}")
    for bench, path in info.get("heatmaps", {}).items():
        print(f"heatmap {bench}: {path}")
    ml = info.get("mlflow", {})
    print(f"MLflow run: {ml.get('run_url')}")
    print(f"registered: {ml.get('model')} v{ml.get('version')} -> {ml.get('alias')}")
    print(f"Prefect UI: {stack.url('prefect')}   stop the stack: python -m infra.stack down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
