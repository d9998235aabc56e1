"""Each training setting is declared once (hybrid/train/config.py): the CLI's options, the
flows' dotted overrides and the training task's config all derive from the dataclasses."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from hybrid.errors import HybridError
from hybrid.train import config


@pytest.fixture
def new_setting(monkeypatch):
    """A field added to the data section, as a contributor would add it: nothing else edited."""
    extended = dataclasses.make_dataclass(
        "DataArgs", [("mix_temperature", float, config.setting(1.0, "Temperature of the language mixture."))],
        bases=(config.DataArgs,))
    monkeypatch.setitem(config.SECTIONS, "data", extended)
    return "data.mix_temperature"


def _app() -> typer.Typer:
    from hybrid.cli import train as cli_train

    app = typer.Typer()
    cli_train.register(app)
    return app


def test_a_new_field_is_a_cli_option_and_an_override_of_the_pipeline(new_setting, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(_app(), ["train", "--help"], env={"COLUMNS": "250"}).output
    assert "--mix-temperature" in help_text and "Temperature of the language mixture." in help_text
    # the CLI accepts it (the run stops later, at the missing pairs table, not at the option)
    got = runner.invoke(_app(), ["train", "--profile", "tiny", "--mix-temperature", "0.5",
                                 "--pairs", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    assert "No such option" not in got.output and "no pairs table" in str(got.exception), got.output

    from flows.common import training_overrides  # what hybrid-pipeline and hybrid-compare call
    from tasks.train import train_config  # the training task's config (its cache key)

    overrides, cfg = training_overrides("tiny", {new_setting: 0.5})
    assert cfg.data.mix_temperature == 0.5
    assert overrides[new_setting] == 0.5
    assert train_config("tiny", overrides, str(tmp_path))["data"]["mix_temperature"] == 0.5
    assert config.resolve("tiny").data.mix_temperature == 1.0  # its default where not overridden


def test_overrides_are_checked_against_the_fields_and_their_types():
    with pytest.raises(HybridError, match="unknown field 'data.mix_temp'"):
        config.resolve("tiny", {"data.mix_temp": 1.0})
    with pytest.raises(HybridError, match="run.steps must be int, got '5'"):
        config.resolve("tiny", {"run.steps": "5"})
    with pytest.raises(HybridError, match="--strategy: unknown 'mono'"):
        config.resolve("tiny", {"data.strategy": "mono"})
    assert config.resolve("tiny", {"data.alpha": 1, "run.steps": 3}).run.steps == 3
    assert config.resolve("tiny", {"run.callbacks": ["m:f"]}).run.callbacks == ["m:f"]
    with pytest.raises(HybridError, match="run.callbacks must be list, got 'm:f'"):
        config.resolve("tiny", {"run.callbacks": "m:f"})


def test_every_setting_has_help_and_its_own_option():
    from hybrid.cli.train import setting_options

    options = setting_options()
    assert set(options) == {d for d, _, _ in config.settings()}
    assert all(f.metadata.get("help") for _, f, _ in config.settings())
    help_text = CliRunner().invoke(_app(), ["train", "--help"], env={"COLUMNS": "250"}).output
    for dotted in options:
        assert "--" + dotted.rsplit(".", 1)[-1].replace("_", "-") in help_text, dotted


def test_the_retrain_flow_takes_the_pipeline_parameters():
    from flows.pipeline import pipeline
    from flows.retrain import retrain

    ours = retrain.parameters.model_dump()["properties"]
    theirs = pipeline.parameters.model_dump()["properties"]
    assert set(ours) == set(theirs)
    assert ours["experiment"]["default"] == "hybrid-retrain"
    assert {k: v for k, v in ours.items() if k != "experiment"} == \
        {k: v for k, v in theirs.items() if k != "experiment"}
