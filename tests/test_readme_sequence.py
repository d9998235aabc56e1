"""The README's by-hand sequence, run as written in a shell against the test session's stack:
`eval "$(python -m infra.stack env)"`, then `hybrid evaluate --model
models:/hybrid-retriever@champion ...`. With the stack's RAY_ADDRESS exported, evaluation
joins the stack's Ray cluster (it used to die: `num_cpus ... must not be provided`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("By hand:\n```bash\n", 1)[1].split("```", 1)[0]


def test_the_readme_sequence_against_the_stack(deployed, pipeline_run, xquad_dir, tmp_path):
    block = _readme_block()
    env_line = next(x for x in block.splitlines() if x.startswith("eval "))
    evaluate = block[block.index("hybrid evaluate"):].split("\npython -m infra.stack down")[0]
    assert env_line == 'eval "$(python -m infra.stack env)"'
    assert evaluate.startswith("hybrid evaluate --model models:/hybrid-retriever@champion")
    # As written, with the test stack's state dir, the offline data's path, a small slice and
    # an output under tmp_path.
    state = deployed.stack.state
    out = tmp_path / "eval-champion"
    script = "\n".join([
        "set -euo pipefail",
        env_line.replace("infra.stack env", f"infra.stack env --state {state}"),
        evaluate.replace("\\\n", " ").replace("../shared/data/lareqa/xquad-r", str(xquad_dir))
                .replace("runs/eval-champion", str(out)) + " --languages en,de",
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "PREFECT_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    r = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert sorted(m["languages"]) == ["de", "en"] and m["summary"]["multi"]["map"] > 0
    assert "mAP mono" in r.stdout
    assert m["meta"]["model"] == "models:/hybrid-retriever@champion"
    # The champion is a model the pipeline registered (its run logged a version).
    assert pipeline_run["latest"]
