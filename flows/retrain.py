"""`hybrid-retrain`: scheduled retraining on the latest data (deployment `retrain/weekly`).

Runs the pipeline as a subflow into its own MLflow experiment. Its parameters are the
pipeline's, forwarded as they are (the signature is `hybrid-pipeline`'s, with `experiment`
defaulting to "hybrid-retrain"), so a setting added to the pipeline is a retrain parameter
too. The data tasks hash the sources' content, so new data means new pairs, a new model and
a new registry version that must pass the promotion gate; unchanged data is cache hits and
no new version.
"""

from __future__ import annotations

import inspect
import typing

from prefect import flow

from flows.pipeline import pipeline

EXPERIMENT = "hybrid-retrain"


def _retrain(**params) -> dict:
    """Retrain from the current sources and gate the result; the parameters are
    `hybrid-pipeline`'s (e.g. benchmarks=["tatoeba"] adds Tatoeba to the evaluation;
    index={"corpus": PATH, "dir": DIR} rebuilds the champion's search index when the
    retrained model is promoted)."""
    return pipeline(**params)


_hints = typing.get_type_hints(pipeline.fn)  # resolved in the pipeline's module
_retrain.__signature__ = inspect.signature(pipeline.fn).replace(  # type: ignore[attr-defined]
    parameters=[p.replace(annotation=_hints[p.name],
                          default=EXPERIMENT if p.name == "experiment" else p.default)
                for p in inspect.signature(pipeline.fn).parameters.values()],
    return_annotation=_hints["return"])
_retrain.__annotations__ = _hints
retrain = flow(name="hybrid-retrain", log_prints=True)(_retrain)


if __name__ == "__main__":
    retrain()
