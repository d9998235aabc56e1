"""Keep what the base model knew: distillation from the frozen starting model on cross steps
(issue #19, recipe 4), or from another frozen model (`optim.distill_teacher`, e.g. an x-x-mono
training: keep what the mono specialist knows).

Training on cross batches (question language != answer language) can pull the encoder away
from what the starting model does well within one language. With `optim.distill_weight` > 0,
every step whose batch type is "cross" adds a second term: the batch's *mono pairs* (each
pair (xling_id, q_lang, p_lang) becomes (xling_id, q_lang, q_lang): the question with its
answer in the question's language) are scored by the trainable encoder (the student) and by
the frozen starting model (the teacher), and the student's b x b score matrix is pulled
towards the teacher's:

    S = q . p^T / temperature        (rows: questions, columns: their mono answers)
    kl:  weight * mean_i KL(softmax(S_teacher[i]) || softmax(S_student[i]))
    mse: weight * mean_ij (S_student[ij] - S_teacher[ij])^2

The term is local to each process (its slice of the batch: no gather) and is backpropagated
separately after the InfoNCE loss, so its parameter gradients add to the loss's in `.grad`
before the trainer averages them over processes (plain forward, or gradient caching when
`data.grad_cache_chunk` is set: `hybrid.train.grad_cache.cached_backward` with this term as
its loss). Cost on a cross step: one teacher forward and one student forward/backward of the
mono texts (without hard negatives roughly 2.3 times a plain cross step: the student's pass
costs what the loss's does, the teacher's forward about a third of that); memory: a second
copy of the model (the teacher).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from hybrid.sampling import Batch, Pair
from hybrid.train.config import DISTILL_LOSSES


def distill_term(student_q: torch.Tensor, student_p: torch.Tensor, teacher_q: torch.Tensor,
                 teacher_p: torch.Tensor, kind: str = "kl", temperature: float = 0.05) -> torch.Tensor:
    """The unweighted distillation divergence of one batch (a scalar tensor).

    Inputs: `student_q`, `student_p`, `teacher_q`, `teacher_p` are [b, dim] embeddings of the
    same b questions and their b (mono) answers, row i of each belonging to pair i, as the
    encoders return them (L2-normalised, so q . p is the cosine). Scores S = q . p^T /
    `temperature` ([b, b]); `kind` "kl": KL(softmax(S_teacher) || softmax(S_student)) per row,
    mean over rows; "mse": the mean squared difference of the two score matrices.
    Invariants: the result is >= 0, and 0 exactly when the student's embeddings equal the
    teacher's; the teacher's inputs are constants (detached: no gradient reaches them);
    computed in float32 at least (float64 inputs stay float64, for gradcheck).
    """
    if kind not in DISTILL_LOSSES:
        raise ValueError(f"distill_term: kind must be one of {', '.join(DISTILL_LOSSES)}, not {kind!r}")
    if temperature <= 0:
        raise ValueError(f"distill_term: temperature must be > 0, not {temperature}")
    b = student_q.shape[0]
    if not (student_p.shape[0] == teacher_q.shape[0] == teacher_p.shape[0] == b):
        raise ValueError("distill_term: the four embedding matrices need the same number of rows")
    dt = torch.promote_types(student_q.dtype, torch.float32)
    s = student_q.to(dt) @ student_p.to(dt).T / temperature
    t = (teacher_q.detach().to(dt) @ teacher_p.detach().to(dt).T) / temperature
    if kind == "mse":
        return F.mse_loss(s, t)
    # batchmean: the sum over all entries / b = the row-wise KL's mean over rows
    return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="batchmean",
                    log_target=True)


def mono_batch(batch: Batch) -> Batch:
    """`batch` with every pair (xling_id, q_lang, p_lang) replaced by (xling_id, q_lang,
    q_lang): each question with its answer in the question's language."""
    return dataclasses.replace(batch, pairs=tuple(Pair(p.xling_id, p.q_lang, p.q_lang) for p in batch.pairs))


def load_teacher(path, model) -> torch.nn.Module:
    """The teacher from a model directory (`optim.distill_teacher`, checked and resolved): its
    own pooling and prefixes, the student's maximum lengths (`model`: the config's ModelArgs),
    so both score the same texts."""
    from hybrid.encoder import BiEncoder

    return BiEncoder.from_pretrained(path, max_query_len=model.max_query_len,
                                     max_passage_len=model.max_passage_len)


def frozen_copy(encoder):
    """A copy of `encoder`'s weights as a new BiEncoder (the tokenizer shared): for a Trainer
    built without a teacher, from the encoder it is given (the starting model: a resumed run
    restores its weights only later, through `Trainer.load_state_dict`)."""
    from hybrid.encoder import BiEncoder

    return BiEncoder(copy.deepcopy(encoder.model), encoder.tokenizer, encoder.pooling,
                     query_prefix=encoder.prefixes["query"], passage_prefix=encoder.prefixes["passage"],
                     max_query_len=encoder.max_lens["query"], max_passage_len=encoder.max_lens["passage"])


class Distiller:
    """The frozen teacher and the distillation term of a batch.

    `teacher`: the starting model (a BiEncoder; it is moved to `device`, put in eval mode and
    every parameter frozen); `weight`, `kind`, `temperature`: as in `distill_term`; `bf16`:
    autocast as the student's loss; `chunk`: `data.grad_cache_chunk` (None: one forward).
    """

    def __init__(self, teacher, device: torch.device, weight: float, kind: str, temperature: float,
                 bf16: bool, chunk: int | None = None):
        if kind not in DISTILL_LOSSES:
            raise ValueError(f"Distiller: kind must be one of {', '.join(DISTILL_LOSSES)}, not {kind!r}")
        self.teacher = teacher.to(device).eval()
        self.teacher.requires_grad_(False)
        self.weight, self.kind, self.temperature = float(weight), kind, float(temperature)
        self.bf16, self.chunk = bool(bf16), chunk

    @torch.no_grad()
    def teacher_embeddings(self, qs: list[str], ps: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's float32 embeddings of questions `qs` and passages `ps` (no graph)."""
        t, dev = self.teacher, self.teacher.device
        if self.chunk:
            from hybrid.train.grad_cache import embed_chunked

            return (embed_chunked(t, qs, "query", self.chunk, self.bf16),
                    embed_chunked(t, ps, "passage", self.chunk, self.bf16))
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            return t.embed_texts(qs, "query").float(), t.embed_texts(ps, "passage").float()

    def backward(self, student, texts, batch: Batch, seed: int) -> float:
        """Accumulate the gradient of `weight * distill_term` of `batch`'s mono pairs (this
        process's slice; texts from `texts.batch(..., hard=0, seed)`) into the student's
        `.grad`; returns the weighted term's value."""
        qs, ps, _ = texts.batch(mono_batch(batch), 0, seed)
        tq, tp = self.teacher_embeddings(qs, ps)

        def term_fn(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return self.weight * distill_term(q, p, tq, tp, self.kind, self.temperature)

        if self.chunk:
            from hybrid.train.grad_cache import cached_backward

            return float(cached_backward(student, qs, ps, term_fn, self.chunk, self.bf16))
        dev = student.device
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            q = student.embed_texts(qs, "query")
            p = student.embed_texts(ps, "passage")
        term = term_fn(q, p)
        term.backward()
        return float(term.detach())
