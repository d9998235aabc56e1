"""How training processes talk to each other: world size, rank, and mean all-reduces.

`Trainer` (hybrid.train.core) only needs these three things from its peers. `Local` is one
process (every operation a no-op); `TorchDist` uses an initialised `torch.distributed`
process group (gloo on CPU, NCCL on GPUs; under Ray Train the adapter's workers, in tests
`torch.multiprocessing` processes). The loss (`hybrid.loss`) all-gathers candidates over the
same process group. Nothing here imports Ray.
"""

from __future__ import annotations

import torch


class Local:
    """One process: rank 0 of 1; reductions return their input."""

    rank = 0
    world = 1

    def mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average `tensors` in place over all processes (here: nothing to do)."""

    def mean(self, x: float) -> float:
        """The mean of the scalar `x` over all processes."""
        return float(x)


class TorchDist(Local):
    """The default `torch.distributed` process group (must be initialised)."""

    def __init__(self):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("TorchDist: torch.distributed is not initialised")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def mean_(self, tensors: list[torch.Tensor]) -> None:
        """One flat all-reduce of all `tensors` (same shapes and order on every rank)."""
        if self.world == 1 or not tensors:
            return
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        flat = _flatten_dense_tensors(tensors)
        dist.all_reduce(flat)
        flat /= self.world
        for t, s in zip(tensors, _unflatten_dense_tensors(flat, tensors), strict=True):
            t.copy_(s)

    def mean(self, x: float) -> float:
        if self.world == 1:
            return float(x)
        import torch.distributed as dist

        dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([float(x)], dtype=torch.float64, device=dev)
        dist.all_reduce(t)
        return float(t.item()) / self.world


def default() -> Local:
    """`TorchDist` when a process group is initialised, else `Local`."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return TorchDist()
    return Local()
