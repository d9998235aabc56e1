"""The verdict of a strategy comparison: records computed from the groups' figures, and the
sentences rendered from those records.

`judge(groups, tolerance, hybrid_alpha)` checks the paper's two claims for each model and
LAReQA benchmark: (1) hybrid (the group nearest alpha = `hybrid_alpha`) is within `tolerance`
mAP of the best of the x-x-mono and x-y baselines on each of Mo, Cr and Mul (`Check`); (2) its
language bias is lower than x-x-mono's (`BiasCheck`). Centered groups (`"centering": True`,
labels ending in `CENTERED`) stay out of the claims; `centering_effects` compares each with its
uncentered twin (`CenteringEffect`) and the best trained group with the centered zero-shot model
(`TrainingGain`). Recipe groups (strategy "recipe", `hybrid.recipes`) stay out of the claims
too; `recipe_checks` judges each recipe group and each centered group (centering is a recipe
too) against issue #19's target (`RecipeCheck`: Mo >= the best uncentered single strategy's,
Mul >= the best uncentered single strategy's, bias <= x-y's, each margin larger than the seed
spread). The result is a `Verdict` of records: numbers and booleans only.

`verdict_sentences` and `effect_sentence` turn the records into English (nothing else does);
`verdict_json` / `verdict` give compare.json's "verdict" (records as plain data, sentences
included). With one seed the sentences say that the spread is not measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from hybrid.evaluation.compare_groups import CENTERED, KINDS, ZERO_SHOT, Figure, Group, is_lareqa

BASELINES = ("x-x-mono", "x-y")
SINGLE_STRATEGIES = ("x-x-mono", "x-y", "hybrid")  # what a recipe has to beat
RECIPE = "recipe"  # the strategy of a recipe row
TOLERANCE = 0.01  # claim 1's "close to the best baseline" margin in mAP (1 point)
TRAINING = "training over centering"


# ---- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """Claim 1 on one model, benchmark and kind ("mono", "cross", "multi"): hybrid's mean mAP
    against the best baseline's; gap = hybrid - best; spread: the larger seed sd of the two
    (None: neither has one); holds: gap >= -tolerance."""

    model: str
    benchmark: str
    kind: str
    hybrid: float
    best_baseline: str
    best: float
    gap: float
    spread: float | None
    holds: bool


@dataclass(frozen=True)
class BiasCheck:
    """Claim 2 on one model and benchmark: hybrid's mean language bias against x-x-mono's;
    holds: strictly lower."""

    model: str
    benchmark: str
    hybrid: float
    x_x_mono: float
    holds: bool

    @property
    def change_pct(self) -> float:
        """Hybrid's bias relative to x-x-mono's, in percent (negative: lower)."""
        return 100 * (self.hybrid - self.x_x_mono) / self.x_x_mono

    def to_json(self) -> dict:
        return {"model": self.model, "benchmark": self.benchmark, "hybrid": self.hybrid,
                "x-x-mono": self.x_x_mono, "holds": self.holds}


@dataclass(frozen=True)
class BenchVerdict:
    """Both claims on one model and LAReQA benchmark for the judged hybrid group `hybrid` (its
    label): the kinds both it and a baseline have, and the bias check (None: a figure missing)."""

    model: str
    benchmark: str
    hybrid: str
    checks: list[Check]
    bias: BiasCheck | None


@dataclass(frozen=True)
class CenteringEffect:
    """What centering changes on one benchmark: centered group `label` minus its uncentered
    twin `against`, per figure (Mo, Mul, bias; bitext: accuracy@1); None where one lacks it."""

    model: str
    benchmark: str
    label: str
    against: str
    delta: dict[str, float | None]


@dataclass(frozen=True)
class Best:
    """The best trained group on one figure: its mean, label and its mean minus the centered
    zero-shot model's."""

    best: float
    label: str
    delta: float


@dataclass(frozen=True)
class TrainingGain:
    """What training adds over the centered zero-shot model `against` on one benchmark: the best
    trained group (centered or not) per figure (highest; lowest for language bias)."""

    model: str
    benchmark: str
    label: str  # always TRAINING
    against: str
    best: dict[str, Best]


@dataclass(frozen=True)
class Margin:
    """One figure of a recipe against its reference group: margin = how much better the recipe
    is (mAP: recipe - reference; bias: reference - recipe), spread = the larger seed sd of the
    two (None: neither has several seeds); clear: margin >= 0 and larger than the spread."""

    figure: str
    recipe: float
    reference: float
    against: str
    margin: float
    spread: float | None

    @property
    def holds(self) -> bool:
        return self.margin >= 0

    @property
    def clear(self) -> bool | None:
        if self.spread is None:
            return None
        return self.margin >= 0 and self.margin > self.spread


@dataclass(frozen=True)
class RecipeCheck:
    """Issue #19's target for recipe group `recipe` on one model and LAReQA benchmark: Mo against
    the best single strategy's Mo, Mul against the best single strategy's Mul, language bias
    against x-y's (`margins`, those that could be computed). meets: every margin >= 0 and all
    three present; clear: and each larger than its seed spread (None: a spread unmeasured)."""

    model: str
    benchmark: str
    recipe: str
    margins: list[Margin]

    @property
    def meets(self) -> bool:
        return len(self.margins) == 3 and all(m.holds for m in self.margins)

    @property
    def clear(self) -> bool | None:
        if not self.meets:
            return False
        flags = [m.clear for m in self.margins]
        return None if None in flags else all(flags)

    def to_json(self) -> dict:
        return {**asdict(self), "meets": self.meets, "clear": self.clear}


@dataclass(frozen=True)
class Verdict:
    """The whole verdict. models: all, in order; unjudged: those without a hybrid group at
    `hybrid_alpha` (the nearest alpha) or without a baseline; spread_measured: some trained
    group has several seeds. A claim is True / False, or None when nothing was checked."""

    tolerance: float
    hybrid_alpha: float
    models: list[str]
    unjudged: list[str]
    benches: list[BenchVerdict]
    spread_measured: bool
    centering: list[CenteringEffect | TrainingGain]
    recipes: list[RecipeCheck] = field(default_factory=list)

    @property
    def checks(self) -> list[Check]:
        return [c for b in self.benches for c in b.checks]

    @property
    def bias(self) -> list[BiasCheck]:
        return [b.bias for b in self.benches if b.bias is not None]

    @property
    def claim_close(self) -> bool | None:
        return all(c.holds for c in self.checks) if self.checks else None

    @property
    def claim_bias(self) -> bool | None:
        return all(b.holds for b in self.bias) if self.bias else None


# ---- logic -----------------------------------------------------------------------------------


def judge(groups: list[Group], tolerance: float = TOLERANCE, hybrid_alpha: float = 0.5) -> Verdict:
    """The two claims per model and LAReQA benchmark, from the uncentered groups only."""
    models = list(dict.fromkeys(g.model for g in groups))
    unjudged, benches = [], []
    for model in models:
        mine = [g for g in groups if g.model == model and not g.centering and g.strategy != RECIPE]
        hyb = [g for g in mine if g.strategy == "hybrid" and g.alpha is not None]
        hyb = min(hyb, key=lambda g: abs(g.alpha - hybrid_alpha), default=None)
        base = [g for g in mine if g.strategy in BASELINES]
        if hyb is None or not base:
            unjudged.append(model)
            continue
        mono = next((g for g in base if g.strategy == "x-x-mono"), None)
        benches += [_judge_bench(hyb, base, mono, b, tolerance)
                    for b, f in hyb.figures.items() if is_lareqa(f)]
    spread = any(g.n > 1 for g in groups if g.strategy != ZERO_SHOT)
    return Verdict(tolerance, hybrid_alpha, models, unjudged, benches, spread,
                   centering_effects(groups), recipe_checks(groups))


def recipe_checks(groups: list[Group]) -> list[RecipeCheck]:
    """Per recipe group (a recipe row, or any centered row: centering is recipe 3) and LAReQA
    benchmark: its Mo and Mul against the best single strategy (x-x-mono, x-y, hybrid at any
    alpha; uncentered) on that figure, its bias against x-y's. Nothing for a group whose model
    has no single-strategy group."""
    out = []
    for r in (g for g in groups if g.strategy == RECIPE or g.centering):
        singles = [g for g in groups if g.model == r.model and not g.centering
                   and g.strategy in SINGLE_STRATEGIES]
        xy = next((g for g in singles if g.strategy == "x-y"), None)
        if not singles:
            continue
        for bench, figs in r.figures.items():
            if not is_lareqa(figs):
                continue
            margins = []
            for key in ("mono.map", "multi.map"):
                cands = [(g.mean(bench, key), g) for g in singles if g.mean(bench, key) is not None]
                if figs[key].mean is None or not cands:
                    continue
                best, bg = max(cands, key=lambda c: c[0])
                margins.append(_margin(key, r, bg, bench, figs[key].mean - best))
            if xy is not None and figs["language_bias"].mean is not None \
                    and xy.mean(bench, "language_bias") is not None:
                margins.append(_margin("language_bias", r, xy, bench,
                                       xy.mean(bench, "language_bias") - figs["language_bias"].mean))
            out.append(RecipeCheck(r.model, bench, r.label, margins))
    return out


def _margin(key: str, r: Group, ref: Group, bench: str, margin: float) -> Margin:
    sd = [f.std for f in (r.figure(bench, key), ref.figure(bench, key)) if f is not None and f.std is not None]
    return Margin(key, r.mean(bench, key), ref.mean(bench, key), ref.label, margin,
                  max(sd) if sd else None)


def _judge_bench(hyb: Group, base: list[Group], mono: Group | None, bench: str,
                 tolerance: float) -> BenchVerdict:
    checks = []
    for kind, _ in KINDS:
        key = f"{kind}.map"
        h = hyb.figure(bench, key)
        cands = [(g.mean(bench, key), g) for g in base if g.mean(bench, key) is not None]
        if h.mean is None or not cands:
            continue
        best, bg = max(cands, key=lambda c: c[0])
        sd = [s for s in (h.std, bg.figure(bench, key).std) if s is not None]
        gap = h.mean - best
        checks.append(Check(hyb.model, bench, kind, h.mean, bg.label, best, gap,
                            max(sd) if sd else None, gap >= -tolerance))
    hb, mb = hyb.mean(bench, "language_bias"), mono.mean(bench, "language_bias") if mono else None
    bias = None if hb is None or mb is None else BiasCheck(hyb.model, bench, hb, mb, hb < mb)
    return BenchVerdict(hyb.model, bench, hyb.label, checks, bias)


def centering_effects(groups: list[Group]) -> list[CenteringEffect | TrainingGain]:
    """Per benchmark: what centering changes for each centered group (against the same label
    without it; none without that twin), then per model what training adds over the centered
    zero-shot model (none without it or without a trained group)."""
    out: list[CenteringEffect | TrainingGain] = []
    by_label = {(g.model, g.label): g for g in groups}
    for g in groups:
        base = by_label.get((g.model, g.label.removesuffix(CENTERED)))
        if not g.centering or base is None:
            continue
        out += [CenteringEffect(g.model, b, g.label, base.label, {
            k: _delta(f[k].mean, base.mean(b, k)) for k in _effect_keys(f)})
            for b, f in g.figures.items() if b in base.figures]
    for model in dict.fromkeys(g.model for g in groups):
        zc = by_label.get((model, ZERO_SHOT + CENTERED))
        trained = [g for g in groups if g.model == model and g.strategy != ZERO_SHOT]
        if zc is None or not trained:
            continue
        for b, f in zc.figures.items():
            best = {}
            for k in _effect_keys(f):
                cands = [(g.mean(b, k), g.label) for g in trained if g.mean(b, k) is not None]
                if cands and f[k].mean is not None:
                    v, label = (min if k == "language_bias" else max)(cands)
                    best[k] = Best(v, label, v - f[k].mean)
            out.append(TrainingGain(model, b, TRAINING, zc.label, best))
    return out


def _effect_keys(figures: dict[str, Figure]) -> tuple[str, ...]:
    if is_lareqa(figures):
        return ("mono.map", "multi.map", "language_bias")
    return tuple(k for k in figures if k.endswith("accuracy@1"))


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# ---- sentences -------------------------------------------------------------------------------


def verdict_sentences(v: Verdict) -> list[str]:
    """The verdict in plain language: the claims, the spread, each model and benchmark, then
    each centering effect (`effect_sentence`)."""
    out = [f"Claim 1 (hybrid within {100 * v.tolerance:.1f} mAP points of the best baseline on "
           f"each of Mo, Cr, Mul): {_word(v.claim_close)}.",
           f"Claim 2 (hybrid's language bias lower than x-x-mono's): {_word(v.claim_bias)}.",
           "Spread over seeds: sample standard deviation in the tables (mean ± sd); a gap smaller "
           "than the spread is within run-to-run noise." if v.spread_measured else
           "One seed per strategy: the run-to-run spread is not measured yet, so gaps of about "
           "one mAP point or less may be noise."]
    for model in v.models:
        prefix = f"{model}: " if len(v.models) > 1 else ""
        if model in v.unjudged:
            out.append(f"{prefix}not evaluated: the comparison needs hybrid and at least one of "
                       f"{', '.join(BASELINES)}.")
        for b in (b for b in v.benches if b.model == model):
            if b.checks:
                out.append(f"{prefix}{b.benchmark}: {b.hybrid} against the best baseline: "
                           + "; ".join(map(_check_words, b.checks)) + ".")
            if b.bias is not None:
                x = b.bias
                out.append(f"{prefix}{b.benchmark}: language bias {x.hybrid:.1f} (hybrid) vs "
                           f"{x.x_x_mono:.1f} (x-x-mono): {'lower' if x.holds else 'NOT lower'} "
                           f"({x.change_pct:+.1f} %).")
    return out + [effect_sentence(e) for e in v.centering] + [recipe_sentence(c) for c in v.recipes]


def recipe_sentence(c: RecipeCheck) -> str:
    """One line per recipe check: each margin, then whether the recipe meets the target."""
    parts = []
    for m in c.margins:
        what = "bias" if m.figure == "language_bias" else _short(m.figure)
        scale = 1.0 if m.figure == "language_bias" else 100.0
        spread = f", seed sd {scale * m.spread:.1f}" if m.spread is not None else ""
        parts.append(f"{what} {scale * m.recipe:.1f} vs {scale * m.reference:.1f} ({m.against}, "
                     f"margin {scale * m.margin:+.1f}{spread})")
    if not c.meets:
        missed = [("bias" if m.figure == "language_bias" else _short(m.figure)) for m in c.margins
                  if not m.holds] or ["a figure is missing"]
        word = f"misses the target ({', '.join(missed)})"
    elif c.clear is None:
        word = "meets the target on one seed (spread not measured)"
    else:
        word = "MEETS the target, every margin larger than the seed spread" if c.clear else \
            "meets the target, but not every margin is larger than the seed spread"
    return f"{c.benchmark}: recipe {c.recipe} vs the best single strategy: " + "; ".join(parts) + f": {word}."


def _check_words(c: Check) -> str:
    spread = f", seed sd {100 * c.spread:.1f}" if c.spread is not None else ""
    return (f"{dict(KINDS)[c.kind]} {100 * c.hybrid:.1f} vs {100 * c.best:.1f} ({c.best_baseline}, "
            f"{100 * c.gap:+.1f}{spread}) {'ok' if c.holds else 'NOT within'}")


def effect_sentence(e: CenteringEffect | TrainingGain) -> str:
    """One line per centering record, figures in points (mAP x 100; bias as is)."""
    if isinstance(e, TrainingGain):
        words = ", ".join(f"{_short(k)} {_signed(k, x.delta)} ({x.label})" for k, x in e.best.items())
        return f"{e.benchmark}: best trained model vs {e.against}: {words}."
    words = ", ".join(f"{_short(k)} {_signed(k, d)}" for k, d in e.delta.items() if d is not None)
    return f"{e.benchmark}: {e.label} vs {e.against}: {words}."


def _short(key: str) -> str:
    return {"mono.map": "Mo", "multi.map": "Mul", "language_bias": "bias"}.get(key, key.replace(".", " "))


def _signed(key: str, d: float) -> str:
    return f"{d:+.1f}" if key == "language_bias" else f"{100 * d:+.1f}"


def _word(v: bool | None) -> str:
    return "not evaluated" if v is None else ("HOLDS" if v else "DOES NOT HOLD")


def verdict_json(v: Verdict) -> dict:
    """compare.json's "verdict": tolerance, hybrid_alpha, checks, bias, claim_close, claim_bias,
    spread_measured, centering (each record with its sentence), sentences."""
    return {"tolerance": v.tolerance, "hybrid_alpha": v.hybrid_alpha,
            "checks": [asdict(c) for c in v.checks], "bias": [b.to_json() for b in v.bias],
            "claim_close": v.claim_close, "claim_bias": v.claim_bias,
            "spread_measured": v.spread_measured,
            "centering": [{**asdict(e), "sentence": effect_sentence(e)} for e in v.centering],
            "recipes": [{**c.to_json(), "sentence": recipe_sentence(c)} for c in v.recipes],
            "sentences": verdict_sentences(v)}


def verdict(groups: list[Group], tolerance: float = TOLERANCE, hybrid_alpha: float = 0.5) -> dict:
    """`judge` as compare.json's plain data (`verdict_json`)."""
    return verdict_json(judge(groups, tolerance, hybrid_alpha))


__all__ = ["BASELINES", "RECIPE", "SINGLE_STRATEGIES", "TOLERANCE", "Best", "BenchVerdict", "BiasCheck",
           "CenteringEffect", "Check", "Margin", "RecipeCheck", "TrainingGain", "Verdict",
           "centering_effects", "effect_sentence", "judge", "recipe_checks", "recipe_sentence",
           "verdict", "verdict_json", "verdict_sentences"]
