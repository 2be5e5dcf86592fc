"""Process group set-up from torchrun's environment (RANK / WORLD_SIZE / LOCAL_RANK) and collective helpers.

Single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``): nothing is initialised and every helper is a no-op,
so the same training code runs under ``python -m`` and ``torchrun --nproc_per_node N``. Backend: nccl
on GPUs, gloo on CPU.
"""
import os
from dataclasses import dataclass
from typing import Any, List, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str = "none"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group if launched by torchrun with more than one process.

    ``device``: ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda``.
    """
    rank, world_size = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    backend = "none"
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                    **({"device_id": dev} if use_cuda else {}))
    return DistInfo(rank, world_size, local_rank, dev, backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(values: Sequence[float], device: torch.device = torch.device("cpu")) -> List[float]:
    """Element-wise sum of ``values`` over all processes (float64, so integer counts stay exact)."""
    if not active():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_tensor(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all processes (returns ``t`` itself when single-process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_object(obj: Any) -> List[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (``[obj]`` when single-process)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_meter(meter, device: torch.device):
    """A task's metric accumulator (``Task.meter``) combined over all processes: additive counts by one
    all-reduce (``as_vector`` / ``load_vector``), anything else gathered (``state`` / ``merge``)."""
    if not active():
        return meter
    if hasattr(meter, "as_vector"):
        return meter.load_vector(all_reduce_tensor(meter.as_vector().to(device)).cpu())  # nccl: device tensors
    meter.merge(all_gather_object(meter.state()))
    return meter
