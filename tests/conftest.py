"""Shared fixtures: the offline data in ../shared/data (or $HYBRID_DATA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.paths import default_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = default_data_dir()
    if d is None or not (d / "lareqa" / "xquad-r").is_dir():
        pytest.fail("offline data not found: set HYBRID_DATA or place shared/data beside the checkout")
    return d


@pytest.fixture(scope="session")
def xquad_dir(data_dir: Path) -> Path:
    return data_dir / "lareqa" / "xquad-r"


@pytest.fixture(scope="session")
def mlqa_dir(data_dir: Path) -> Path:
    return data_dir / "lareqa" / "mlqa-r-sample"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache, unless HYBRID_TEST_CACHE points at a shared one
    (the materialized me5-small model is kept there to avoid rebuilding it per session)."""
    import os

    shared = os.environ.get("HYBRID_TEST_CACHE")
    monkeypatch.setenv("HYBRID_CACHE", shared or str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (encoding uses a running Ray as is)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny deterministic test model (seed 0); modules that need a variant define their own."""
    from hybrid.model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")
