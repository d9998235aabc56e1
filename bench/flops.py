"""How near the machine's limit a training step runs: the useful FLOPs of a BERT-style
encoder's forward + backward, and the machine's measured GEMM rate to hold them against.

`step_flops(config, lengths)`: for sequences of `lengths` tokens (after truncation, without
padding: padding is work the machine does but the step did not need), each layer's matrix
products cost 2 FLOPs per multiply-add: the Q, K, V and output projections (4 h^2 weights),
the feed-forward (2 h i weights) and attention's QK^T and AV (2 L h per token). The backward
pass computes both the input's and the weights' gradients of every product: twice the
forward. Embedding lookups, layer norms, softmax and the loss are left out (a few percent).

`gemm_rate(dtype)`: GFLOP/s of torch's matrix product on square matrices at the process's
thread count (the best of `repeats` timed runs after a warm-up), the rate the CPU's BLAS
actually reaches: a ceiling the encoder's smaller, thinner products stay below.
"""

from __future__ import annotations

import time

DTYPES = ("fp32", "bf16")


def step_flops(config, lengths) -> float:
    """FLOPs of one forward + backward of the encoder described by the HF `config` (hidden_size,
    intermediate_size, num_hidden_layers) over sequences of the given token `lengths`."""
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    tokens = sum(lengths)
    squares = sum(n * n for n in lengths)
    forward = layers * (2 * (4 * h * h + 2 * h * i) * tokens + 4 * h * squares)
    return 3.0 * forward


def gemm_rate(dtype: str = "fp32", n: int = 2048, repeats: int = 5) -> float:
    """Measured GFLOP/s of an n x n x n matrix product in `dtype` (fp32 or bf16)."""
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} (choose {', '.join(DTYPES)})")
    t = torch.float32 if dtype == "fp32" else torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen).to(t), torch.randn(n, n, generator=gen).to(t)
    a @ b  # warm-up: thread pool, kernel choice
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return round(2 * n ** 3 / best / 1e9, 1)
