"""The machine a profile ran on: host description and measured GEMM rates.

The GEMM rate (GFLOP/s of one large square matrix product, 2*m*n*k FLOP) is the roofline the profile report
divides a model's achieved GFLOP/s by. It is measured in the same run as the models, because a
quoted peak says little about a shared or throttled machine.
"""
import os
import platform
import statistics
import time
from typing import Dict, Iterable, Optional

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_info() -> Dict[str, object]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


# Two kernels per product: torch.mm and F.linear (a @ b^T). They can take different backends; on an
# AVX2-only CPU the bf16 F.linear path is ~8x faster than bf16 torch.mm. The rate is the faster one's.
GEMM_OPS = {"mm": torch.mm, "linear": F.linear}


def _time_gemm(op, a: torch.Tensor, b: torch.Tensor, inner: int) -> float:
    """Seconds per product, averaged over ``inner`` back-to-back products (CUDA: events, not host clocks)."""
    if a.is_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            op(a, b)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / inner
    t = time.perf_counter()
    for _ in range(inner):
        op(a, b)
    return (time.perf_counter() - t) / inner


@torch.inference_mode()
def gemm_rate(precision: str = "fp32", n: Optional[int] = None, repeats: int = 5, device: str = "cpu",
              max_seconds: float = 3.0) -> Dict[str, object]:
    """GFLOP/s of an n x n x n product (2 n^3 FLOP): median of ``repeats`` timings, faster of mm / linear.

    Starts at n=256 and doubles up to ``n`` (2048 on CPU, 8192 on CUDA) only while the timing fits in
    ``max_seconds``: CPUs without bf16/fp16 units (e.g. AVX2-only) run half-precision GEMMs 10-100x slower
    than fp32, and a fixed 2048^3 product would then take a minute.
    """
    dtype = DTYPES[precision]
    n_max = n or (8192 if device.startswith("cuda") else 2048)
    inner = 10 if device.startswith("cuda") else 1
    budget = max_seconds / (len(GEMM_OPS) * (repeats + 1))  # time allowed for one product at the final size
    size = min(256, n_max)
    while True:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        b = torch.randn(size, size, generator=g).to(device=device, dtype=dtype)
        first = {}
        for name, op in GEMM_OPS.items():
            _time_gemm(op, a, b, 1)  # warm-up: allocation, kernel selection
            first[name] = _time_gemm(op, a, b, inner)
        if size * 2 > n_max or max(first.values()) * 8 > budget:
            break
        size *= 2
    secs = {name: statistics.median([first[name]] + [_time_gemm(op, a, b, inner) for _ in range(repeats - 1)])
            for name, op in GEMM_OPS.items()}
    best = min(secs, key=secs.get)
    return {"precision": precision, "n": size, "op": best, "seconds": secs[best],
            "gflops_per_s": 2 * size ** 3 / secs[best] / 1e9,
            "gflops_per_s_by_op": {k: 2 * size ** 3 / v / 1e9 for k, v in secs.items()}}


def measure_machine(precisions: Iterable[str] = ("fp32", "bf16"), device: str = "cpu",
                    max_seconds: float = 3.0) -> Dict[str, object]:
    """Host description plus ``gemm[precision]`` (see ``gemm_rate``) for each precision."""
    info = host_info()
    info["device"] = device
    info["gemm"] = {p: gemm_rate(p, device=device, max_seconds=max_seconds) for p in dict.fromkeys(precisions)}
    return info
