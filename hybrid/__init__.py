"""hybrid: multilingual dense retrieval trained with hybrid mono/cross-lingual batches.

A pure library (no Prefect, no MLflow): data, sampling, loss, model, training,
encoding, metrics and evaluation. `tasks/` and `flows/` orchestrate it; `hybrid ...`
(the CLI in `hybrid.cli`) runs every step without an orchestrator.
"""

__version__ = "0.1.0"
