"""The infra files: the local stack (real servers on 127.0.0.1), the Ray cluster config and
the KubeRay manifest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.stack import CLIENT_ENV, Stack, StackError, _descendants, _procs, free_port

ROOT = Path(__file__).resolve().parent.parent


def test_ray_cluster_config_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((ROOT / "infra" / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(cfg))
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["worker_ips"]
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--head" in head and "--dashboard-host=127.0.0.1" in head
    assert all("--address=$RAY_HEAD_IP:6379" in c
               for c in cfg["worker_start_ray_commands"] if " start " in c)


def test_kuberay_manifest_has_gpu_workers_and_matches_ray():
    import ray

    doc = yaml.safe_load((ROOT / "infra" / "kuberay-raycluster.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    spec = doc["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = spec["workerGroupSpecs"]
    gpu = [g for g in groups if int(g["rayStartParams"].get("num-gpus", 0)) > 0]
    assert gpu, "no GPU worker group"
    for g in gpu:
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        (container,) = g["template"]["spec"]["containers"]
        limits = container["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == int(g["rayStartParams"]["num-gpus"])


def test_ray_port_in_worker_range_is_refused(tmp_path):
    with pytest.raises(StackError, match="worker port range"):
        Stack(tmp_path).ports({"ray": 12345})


def test_env_without_stack_is_a_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "infra.stack", "env", "--state", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: no stack in")


def _listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets these processes listen on."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                addr, port = f[1].split(":")
                if len(addr) == 8:
                    ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
                else:
                    ip = "::" if set(addr) == {"0"} else addr
                found.add((ip, int(port, 16)))
    return found


def _cmdlines_with(text: str) -> list[str]:
    found = []
    for f in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = f.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


def _group(pgid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


@pytest.mark.slow
def test_stack_up_is_idempotent_binds_loopback_and_stops(tmp_path):
    stack = Stack(tmp_path / "state")
    ports = {"prefect": free_port(), "mlflow": free_port(), "ray": free_port()}
    try:
        stack.up(ports, log=lambda _: None)
        assert all(stack.status()[n] for n in ("prefect", "mlflow", "ray"))
        pids = {n: stack.pid(n) for n in ("prefect", "mlflow", "ray")}
        stack.up(log=lambda _: None)  # already running: nothing restarts
        assert {n: stack.pid(n) for n in pids} == pids
        for name in ("prefect", "mlflow"):
            listening = _listening(_group(pids[name]))
            assert (("127.0.0.1", ports[name]) in listening), listening
            assert {ip for ip, _ in listening} == {"127.0.0.1"}, (name, listening)
        stack.worker(log=lambda _: None)
        assert stack.status()["worker"]

        r = subprocess.run([sys.executable, "-m", "infra.stack", "env", "--state",
                            str(stack.state)], capture_output=True, text=True, cwd=ROOT)
        env = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.splitlines())
        assert tuple(env) == tuple(stack.env()) == CLIENT_ENV  # what tests/conftest.py drops
        assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{ports['prefect']}/api"
        assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['mlflow']}"
        assert env["RAY_ADDRESS"] == f"127.0.0.1:{ports['ray']}"
        ray_env = {**os.environ, **stack.env()}
        probe = subprocess.run([sys.executable, "-c", "import ray; ray.init(); "
                                "print(ray.get(ray.remote(lambda: 41 + 1).remote()))"],
                               capture_output=True, text=True, env=ray_env, timeout=120)
        assert probe.stdout.strip().endswith("42"), probe.stderr[-2000:]
        # the dashboard (Ray's state API, which Ray Train's placement-group cleaner polls) is
        # up, on loopback only, and answers a token-holding client
        dash = stack.ports()["ray_dashboard"]
        assert ("127.0.0.1", dash) in _listening(_group(pids["ray"]))
        state = subprocess.run([sys.executable, "-c", "import ray; ray.init(); from ray.util.state "
                                "import list_nodes; print(len(list_nodes()))"],
                               capture_output=True, text=True, env=ray_env, timeout=120)
        assert state.stdout.strip().endswith("1"), state.stderr[-2000:]
        no_token = {k: v for k, v in ray_env.items() if not k.startswith("RAY_AUTH")}
        no_token["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "missing-token")
        refused = subprocess.run([sys.executable, "-c", "import ray; ray.init()"],
                                 capture_output=True, text=True, env=no_token, timeout=120)
        assert refused.returncode != 0  # the head takes only clients holding its token
        pools = subprocess.run([sys.executable, "-m", "prefect", "work-pool", "inspect",
                                "local"], capture_output=True, text=True,
                               env={**os.environ, **stack.env()})
        assert pools.returncode == 0 and "process" in pools.stdout
        for name in ("prefect", "mlflow", "ray", "worker"):
            assert stack.log_file(name).exists()
        groups = {n: stack.pid(n) for n in ("prefect", "mlflow", "ray", "worker")}
        family = set().union(*(_descendants(pid, _procs()) for pid in groups.values()))
        assert len(family) > 4  # ray start -> gcs, raylet -> workers (own process groups)
    finally:
        stack.down(log=lambda _: None)
    assert not any(stack.status().values())
    assert not any(_group(pgid) for pgid in groups.values())
    assert not [p for p in family if Path(f"/proc/{p}").exists()
                and _procs().get(p)]  # no descendant (e.g. a Ray worker) outlived its service
    assert not _cmdlines_with(str(stack.ray_temp))
    assert not _cmdlines_with(str(stack.state))
    assert not stack.ray_temp.exists()


def test_demo_reads_results_dir_as_prefect_does():
    """`python -m infra.demo -p results_dir=...` finds latest.json where the flow wrote it:
    the value is JSON when it parses, else the raw string (Prefect's CLI rule)."""
    from infra.demo import param_value

    assert param_value(['results_dir="/tmp/a b"'], "results_dir", "runs/pipeline") == "/tmp/a b"
    assert param_value(["results_dir=runs/x"], "results_dir", "runs/pipeline") == "runs/x"
    assert param_value(["alpha=0.5", "results_dir_old=1"], "results_dir", "runs/pipeline") == "runs/pipeline"


def test_demo_deploys_again_only_when_the_deployments_may_differ(stack_session, tmp_path, monkeypatch):
    """`deploy_needed` against the session's Prefect server (deployed by conftest): no marker,
    a marker from other sources, or a missing deployment mean deploying; a current marker and
    an existing deployment mean skipping."""
    import infra.demo
    from infra.demo import deploy_key, deploy_needed

    stack, api = stack_session.stack, stack_session.env["PREFECT_API_URL"]
    marker = stack.state / "deployed.sha256"
    marker.unlink(missing_ok=True)
    assert deploy_needed(stack, "hybrid-pipeline/quick", api)
    marker.write_text(deploy_key() + "\n")
    try:
        assert not deploy_needed(stack, "hybrid-pipeline/quick", api)
        assert deploy_needed(stack, "hybrid-pipeline/no-such-deployment", api)
        (tmp_path / "flows").mkdir()
        (tmp_path / "prefect.yaml").write_text((ROOT / "prefect.yaml").read_text())
        monkeypatch.setattr(infra.demo, "ROOT", tmp_path)  # another directory, no flows: differs
        assert deploy_needed(stack, "hybrid-pipeline/quick", api)
    finally:
        marker.unlink()
