"""Ray connections (`hybrid.raycluster`): an unreachable RAY_ADDRESS fails within the bound
with one line naming the address; `hybrid evaluate` and `hybrid train` run on the session
stack's Ray head exactly as a user does after `eval "$(python -m infra.stack env)"`; that head
listens on loopback only and refuses a client without its token."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hybrid.cli import main
from hybrid.errors import HybridError
from hybrid.raycluster import TIMEOUT_ENV, ensure_ray, ray_session

ROOT = Path(__file__).resolve().parent.parent
HYBRID = [sys.executable, "-m", "hybrid"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    from hybrid.data.pairs import write_pairs

    d = tmp_path_factory.mktemp("pairs")
    write_pairs(pd.DataFrame([
        {"dataset": "toy", "xling_id": f"id{i}", "lang": lg,
         "question": f"{lg} question {i} about topic {i % 7}",
         "positive": f"{lg} answer sentence {i} on topic {i % 7}", "context": None,
         "hard_negatives": [f"{lg} other sentence {i}"]}
        for i in range(40) for lg in ("en", "de", "zh")]), d, {"source": "test"})
    return d


# ------------------------------------------------------------------ no cluster where it says
def test_helper_fails_within_the_bound_naming_the_address(monkeypatch):
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setenv(TIMEOUT_ENV, "2")
    t0 = time.monotonic()
    with pytest.raises(HybridError) as err:
        ensure_ray(4)
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert msg.startswith(f"Ray cluster at {address} (RAY_ADDRESS) unreachable after 2 s: ")
    assert ("Connection refused" in msg or "timed out" in msg) and "\n" not in msg
    monkeypatch.setenv(TIMEOUT_ENV, "soon")
    with pytest.raises(HybridError, match=f"{TIMEOUT_ENV}='soon': expected a positive number"):
        ensure_ray()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_exits_2_with_one_line_when_ray_address_is_unreachable(
        command, tiny, pairs_dir, mlqa_dir, tmp_path, monkeypatch, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setenv(TIMEOUT_ENV, "3")
    # a cache of its own: embeddings cached by earlier tests would need no Ray at all
    monkeypatch.setenv("HYBRID_CACHE", str(tmp_path / "cache"))
    argv = {"train": ["train", "--profile", "tiny", "--model", str(tiny), "--pairs",
                      str(pairs_dir), "--out", str(tmp_path / "run"), "--steps", "2"],
            "evaluate": ["evaluate", "--model", str(tiny), "--benchmark", "mlqa-r", "--source",
                         str(mlqa_dir), "--languages", "en,de", "--out", str(tmp_path / "ev")]}
    t0 = time.monotonic()
    assert main(argv[command]) == 2
    assert time.monotonic() - t0 < 60  # the data checks and model load, then <= 3 s for Ray
    err = capsys.readouterr().err.strip()  # after the model load's progress bar, if any
    assert err.count("error: ") == 1 and err.rsplit("\n", 1)[-1].startswith(
        f"error: Ray cluster at {address} (RAY_ADDRESS) unreachable after 3 s: "), err
    assert "Traceback" not in err


def test_session_starts_uses_and_stops_a_local_ray(monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with ray_session(2, log_to_driver=False, configure_logging=False) as started:
        assert started and ray.cluster_resources()["CPU"] == 2
        # an initialised Ray is used as is, whatever RAY_ADDRESS says
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
        with ray_session(8) as again:
            assert not again
        assert ray.is_initialized()
    assert not ray.is_initialized()


# ------------------------------------------------------------------ the session's stack
def _user_env(stack_session, **extra) -> dict[str, str]:
    """What a shell has after `eval "$(python -m infra.stack env)"`."""
    out = subprocess.run([sys.executable, "-m", "infra.stack", "env", "--state",
                          str(stack_session.stack.state)], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    exported = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert exported == stack_session.stack.env()
    return {**os.environ, **exported, **extra}


def _drivers(env) -> list[dict]:
    """(entrypoint, driver IP) of every job the stack's Ray has seen."""
    code = ("import json, ray; ray.init(log_to_driver=False, configure_logging=False); "
            "from ray._private import state; print(json.dumps([{'entry': j.get('Entrypoint', ''),"
            " 'ip': j.get('DriverIPAddress')} for j in state.jobs()]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _new_driver(before: list[dict], after: list[dict], word: str) -> dict:
    new = [d for d in after if d not in before and word in d["entry"]]
    assert len(new) == 1, (before, after)
    return new[0]


@pytest.mark.slow
def test_evaluate_on_the_stack(stack_session, tiny, mlqa_dir, tmp_path):
    # a cache of its own: with every embedding cached, evaluation needs no Ray
    env = _user_env(stack_session, HYBRID_CACHE=str(tmp_path / "cache"))
    before = _drivers(env)
    out = tmp_path / "ev"
    r = subprocess.run([*HYBRID, "evaluate", "--model", str(tiny), "--benchmark", "mlqa-r",
                        "--source", str(mlqa_dir), "--languages", "en,de", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["summary"]) >= {"mono", "cross", "multi"}
    assert _new_driver(before, _drivers(env), "evaluate")["ip"] == "127.0.0.1"


@pytest.mark.slow
def test_train_on_the_stack(stack_session, tiny, pairs_dir, tmp_path):
    env = _user_env(stack_session)
    before = _drivers(env)
    out = tmp_path / "run"
    r = subprocess.run([*HYBRID, "train", "--profile", "tiny", "--model", str(tiny), "--pairs",
                        str(pairs_dir), "--out", str(out), "--steps", "2"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "train_summary.json").read_text())
    assert s["steps"] == 2 and s["workers"] == 2
    assert (out / "model").is_dir()
    assert _new_driver(before, _drivers(env), "train")["ip"] == "127.0.0.1"


# ------------------------------------------------------------------ the stack's Ray on loopback
def _routable_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: just the route's source address
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def _listening_addresses(pids: set[int]) -> set[tuple[str, int]]:
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
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            hexip, port = f[1].split(":")
            raw = bytes.fromhex(hexip)
            if len(raw) == 4:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, words).removeprefix("::ffff:")
            found.add((ip, int(port, 16)))
    return found


@pytest.mark.slow
def test_stack_ray_listens_on_loopback_only_and_wants_the_token(stack_session, tmp_path):
    from infra.stack import _descendants, _procs

    stack = stack_session.stack
    port = stack.ports()["ray"]
    head = stack.pid("ray")
    family = _descendants(head, _procs()) | {head}
    listening = _listening_addresses(family)
    assert ("127.0.0.1", port) in listening  # the GCS
    assert len(listening) > 3  # GCS, raylet, client server, agents ...
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    ip = _routable_ip()
    if ip is not None:
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex((ip, port)) != 0  # not reachable from the network
    # a client without the token: refused, in one line naming the address
    env = _user_env(stack_session, **{TIMEOUT_ENV: "10"})
    env = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_TOKEN_PATH"] = str(tmp_path / "missing-token")
    r = subprocess.run([sys.executable, "-c", "from hybrid.raycluster import ensure_ray\n"
                        "from hybrid.errors import HybridError\ntry:\n    ensure_ray()\n"
                        "except HybridError as e:\n    print(e)\n    raise SystemExit(2)"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stdout.strip() == (f"Ray cluster at 127.0.0.1:{port} (RAY_ADDRESS) refused the "
                                "connection: authentication token missing or incorrect "
                                "(RAY_AUTH_MODE must be token and RAY_AUTH_TOKEN_PATH name the "
                                "cluster's token file)")
