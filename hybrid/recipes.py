"""Recipes beyond the paper's three strategies (issue #19): named ways to get one model that is
good on monolingual and on multilingual (pooled) retrieval at once.

A `Recipe` is one of two kinds:
- "train": a training with config `overrides` (dotted fields of `hybrid.train.config`) on top of
  the comparison's shared settings, e.g. multi-positive InfoNCE or an alpha schedule; with
  `teacher` (a row label), the distillation teacher (`optim.distill_teacher`) is that row's
  model of the same seed, trained first;
- "merge": the weight interpolation (`hybrid merge`) of two rows of the same comparison and
  seed, `merge = (A, B)` by row label (a strategy label such as "x-x-mono", or "zero-shot" for
  the starting model), the weight chosen on the training side's validation ids; or, with a
  third row `merge = (A, B, base)`, task arithmetic: A + weight * (B - base).

Per-language centering is not a recipe here: the comparison's `centering` flag adds a
centered twin of every row.

`RECIPES` holds the named ones (`hybrid-compare -p 'recipes=["multi-positive"]'`); a custom one
is a dict `{"name": ..., "overrides": {...}}` (optionally with `"teacher": ROW`) or
`{"name": ..., "merge": [A, B]}` (or `[A, B, base]`)
(`recipe_from`). Recipe rows are labelled with their name, and the comparison's verdict judges
each against the best single strategy (`hybrid.evaluation.compare_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hybrid.errors import HybridError

KINDS = ("train", "merge")


@dataclass(frozen=True)
class Recipe:
    """A named recipe: kind "train" (with `overrides`) or "merge" (of the rows `merge`)."""

    name: str
    kind: str
    help: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    merge: tuple[str, ...] | None = None  # (A, B) or (A, B, base)
    teacher: str | None = None  # a train recipe's distillation teacher: a row label

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise HybridError(f"recipe {self.name!r}: kind must be one of {', '.join(KINDS)}")
        if (self.kind == "merge") != (self.merge is not None):
            raise HybridError(f"recipe {self.name!r}: a merge recipe names the two rows it merges "
                              "(and only it does)")
        if self.teacher is not None and (self.kind != "train"
                                         or not self.overrides.get("optim.distill_weight")):
            raise HybridError(f"recipe {self.name!r}: a teacher is for a training recipe with "
                              "'optim.distill_weight' > 0 in its overrides")
        if self.merge is not None and len(self.merge) not in (2, 3):
            raise HybridError(f"recipe {self.name!r}: a merge names two rows (A, B) or three "
                              f"(A, B, base), not {len(self.merge)}")

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "help": self.help,
                "overrides": dict(self.overrides), "merge": list(self.merge) if self.merge else None,
                "teacher": self.teacher}

    @property
    def inputs(self) -> tuple[str, ...]:
        """The rows this recipe needs before it runs: the merged ones, or the teacher."""
        return self.merge or ((self.teacher,) if self.teacher else ())


_HYBRID = {"data.strategy": "hybrid"}

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("merge-mono-cross", "merge", "x-x-mono and x-y trainings interpolated (WiSE-FT / "
           "model soup); weight chosen on validation ids", merge=("x-x-mono", "x-y")),
    Recipe("merge-hybrid-cross", "merge", "hybrid and x-y trainings interpolated",
           merge=("hybrid (alpha=0.5)", "x-y")),
    Recipe("merge-cross-base", "merge", "the x-y training interpolated with its starting model "
           "(fine-tuned + base)", merge=("x-y", "zero-shot")),
    Recipe("mono-plus-distill", "merge", "x-x-mono plus a weight times the distill training's "
           "change from the starting model (task arithmetic); weight chosen on validation ids",
           merge=("x-x-mono", "distill", "zero-shot")),
    Recipe("multi-positive", "train", "hybrid alpha 0.5; cross batches hold 2 parallel answers "
           "per question id, both positives (multi-positive InfoNCE)",
           {**_HYBRID, "data.alpha": 0.5, "data.parallel_k": 2, "optim.multi_positive": True}),
    Recipe("distill", "train", "x-y with a distillation term: the scores of mono pairs kept "
           "close to the frozen starting model's (KL)",
           {"data.strategy": "x-y", "optim.distill_weight": 1.0}),
    Recipe("distill-from-mono", "train", "x-y with a distillation term whose teacher is the "
           "x-x-mono training of the same seed: the scores of mono pairs kept close to the mono "
           "specialist's (KL)", {"data.strategy": "x-y", "optim.distill_weight": 1.0},
           teacher="x-x-mono"),
    Recipe("schedule-mono-to-cross", "train", "hybrid with alpha from 1 (mono) to 0 (cross), "
           "cosine over the steps",
           {**_HYBRID, "data.alpha": 1.0, "data.alpha_end": 0.0, "data.alpha_schedule": "cosine"}),
    Recipe("schedule-cross-to-mono", "train", "hybrid with alpha from 0 (cross) to 1 (mono), "
           "cosine over the steps",
           {**_HYBRID, "data.alpha": 0.0, "data.alpha_end": 1.0, "data.alpha_schedule": "cosine"}),
)}


def recipe_from(entry: str | dict) -> Recipe:
    """A recipe from its name in `RECIPES` or a custom dict {"name", "overrides"} /
    {"name", "merge": [A, B]} / {"name", "merge": [A, B, base]}; HybridError (one line) for
    anything else."""
    if isinstance(entry, str):
        if entry not in RECIPES:
            raise HybridError(f"recipes: unknown recipe {entry!r} (choose from {', '.join(RECIPES)}, "
                              "or give {'name': ..., 'overrides': {...}} / {'name': ..., 'merge': [A, B]})")
        return RECIPES[entry]
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise HybridError(f"recipes: expected a recipe name or a dict with a 'name', got {entry!r}")
    extra = sorted(set(entry) - {"name", "overrides", "merge", "help", "teacher"})
    if extra:
        raise HybridError(f"recipes: {entry['name']!r}: unknown key(s) {', '.join(extra)}")
    if "merge" in entry:
        m = entry["merge"]
        if not (isinstance(m, (list, tuple)) and len(m) in (2, 3) and all(isinstance(x, str) for x in m)):
            raise HybridError(f"recipes: {entry['name']!r}: 'merge' must name two rows [A, B] or "
                              f"three [A, B, base], got {m!r}")
        return Recipe(entry["name"], "merge", entry.get("help", ""), merge=tuple(m),
                      teacher=entry.get("teacher"))
    overrides = entry.get("overrides")
    if not isinstance(overrides, dict) or not overrides:
        raise HybridError(f"recipes: {entry['name']!r}: give 'overrides' (dotted config fields) "
                          "or 'merge'")
    teacher = entry.get("teacher")
    if teacher is not None and not (isinstance(teacher, str) and teacher):
        raise HybridError(f"recipes: {entry['name']!r}: 'teacher' must name a row, got {teacher!r}")
    return Recipe(entry["name"], "train", entry.get("help", ""), dict(overrides), teacher=teacher)


def recipes_from(entries: list | None, row_labels: list[str]) -> list[Recipe]:
    """The recipes of a comparison, checked: names unique and not a row label already taken,
    merge inputs and teachers among `row_labels` (the comparison's strategy rows and
    "zero-shot") or earlier recipes."""
    out: list[Recipe] = []
    known = list(row_labels)
    for entry in entries or []:
        r = recipe_from(entry)
        if r.name in known:
            raise HybridError(f"recipes: {r.name!r} is already a row of the comparison")
        missing = [x for x in r.inputs if x not in known]
        if missing:
            raise HybridError(f"recipes: {r.name!r} {'merges' if r.merge else 'distills from'} "
                              f"{', '.join(map(repr, missing))}, which the comparison does not "
                              f"produce (rows: {', '.join(known)})")
        out.append(r)
        known.append(r.name)
    return out


__all__ = ["KINDS", "RECIPES", "Recipe", "recipe_from", "recipes_from"]
