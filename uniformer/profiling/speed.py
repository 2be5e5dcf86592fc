"""Inference latency / throughput, training-step throughput and peak memory, under a time budget.

Timing rule (all functions): warm-up calls, then timed calls, median reported; CUDA is synchronised
around every call. A ``deadline`` (``time.perf_counter()`` value) stops warm-up and timing early
once the next call would pass it, but at least one warm-up and one timed call always run, so a
measurement is never empty; ``repeats_done < repeats`` marks it truncated.

Out-of-memory is handled as timm's benchmark.py does: halve the batch and retry (``run_with_backoff``).

Inputs: ``size`` is an image side (int, input (3, size, size)) or a full input shape without the batch
dim, e.g. (3, T, H, W) for a video clip, so the same functions time image and video models.
"""
import copy
import gc
import re
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .machine import DTYPES


def synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --- out-of-memory back-off ------------------------------------------------------------------------
def is_oom(exc: BaseException) -> bool:
    """CUDA OOM, or the CPU allocator's failure message (a plain RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg
                                              or "not enough memory" in msg)


def run_with_backoff(fn: Callable[[int], object], batch_size: int, min_batch_size: int = 1):
    """``fn(batch_size)``, halving the batch on out-of-memory; returns ``(result, batch size used)``."""
    bs = batch_size
    while True:
        try:
            return fn(bs), bs
        except Exception as e:  # noqa: BLE001 - re-raised unless it is an OOM we can back off from
            if not is_oom(e) or bs // 2 < min_batch_size:
                raise
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        bs //= 2


# --- peak memory -----------------------------------------------------------------------------------
def _proc_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


class PeakMemory:
    """Peak memory of the enclosed code above what was in use at entry, in MB (``self.peak_mb``).

    CUDA: ``max_memory_allocated`` after a reset. CPU: peak RSS (VmHWM) after resetting it through
    /proc/self/clear_refs (Linux); where that is not possible, growth of ``ru_maxrss`` (a lower bound).
    """

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.peak_mb: Optional[float] = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self._hwm = True
        except OSError:
            pass
        self._base = _proc_status_kb("VmRSS") if self._hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2 ** 20
        elif self._hwm:
            self.peak_mb = max(0, _proc_status_kb("VmHWM") - self._base) / 1024
        else:
            self.peak_mb = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base) / 1024
        return False


# --- timing ----------------------------------------------------------------------------------------
@dataclass
class Timing:
    batch_size: int
    times: List[float] = field(default_factory=list)  # seconds per timed call
    warmup_done: int = 0
    repeats: int = 0  # requested
    peak_mem_mb: Optional[float] = None

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def img_per_s(self) -> float:
        return self.batch_size / self.seconds

    @property
    def ms(self) -> float:
        return self.seconds * 1e3

    @property
    def truncated(self) -> bool:
        return len(self.times) < self.repeats

    def as_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d.update(seconds=self.seconds, img_per_s=self.img_per_s, ms=self.ms, truncated=self.truncated)
        return d


def time_calls(fn: Callable[[], object], batch_size: int, warmup: int, repeats: int,
               deadline: Optional[float] = None, device="cpu") -> Timing:
    """Warm up, then time ``fn()``; see the module docstring for the deadline rule."""
    out = Timing(batch_size, repeats=repeats)

    def call() -> float:
        t = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - t

    last = 0.0
    for i in range(max(1, warmup)):
        if i and deadline is not None and time.perf_counter() + last > deadline:
            break
        last = call()
        out.warmup_done += 1
    for i in range(max(1, repeats)):
        if i and deadline is not None and time.perf_counter() + last > deadline:
            break
        last = call()
        out.times.append(last)
    return out


Size = Union[int, Sequence[int]]  # image side, or input shape without the batch dim


def input_shape(size: Size) -> Tuple[int, ...]:
    """(3, size, size) for an image side, else ``size`` as a tuple (e.g. (3, T, H, W))."""
    return (3, size, size) if isinstance(size, int) else tuple(size)


def random_images(batch_size: int, size: Size, device="cpu", seed: int = 0) -> torch.Tensor:
    """Random inputs of shape (batch_size, *input_shape(size)): images or clips."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, *input_shape(size), generator=g).to(device)


def time_inference(model: nn.Module, size: Size, batch_size: int, warmup: int, repeats: int,
                   deadline: Optional[float] = None, device="cpu", track_memory: bool = True) -> Timing:
    """Forward passes of ``model`` (taking fp32 inputs, e.g. an ``InferenceModel``) on one random batch."""
    x = random_images(batch_size, size, device)
    with torch.inference_mode(), PeakMemory(device) as mem:
        timing = time_calls(lambda: model(x), batch_size, warmup, repeats, deadline, device)
    timing.peak_mem_mb = mem.peak_mb if track_memory else None
    return timing


def time_train_step(model: nn.Module, size: Size, batch_size: int, warmup: int, repeats: int,
                    deadline: Optional[float] = None, device="cpu", precision: str = "fp32",
                    channels_last: bool = False, num_classes: int = 1000) -> Timing:
    """Training steps (forward, cross-entropy, backward, AdamW step) on a copy of ``model``.

    bf16/fp16 use autocast (weights stay fp32, as in mixed-precision training). Token-labelling models
    return a tuple in training mode; the class logits (first element) carry the loss.
    """
    model = copy.deepcopy(model).to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = random_images(batch_size, size, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch_size,), generator=torch.Generator().manual_seed(0)).to(device)
    dev_type = torch.device(device).type
    amp = precision != "fp32"

    def step():
        with torch.autocast(dev_type, dtype=DTYPES[precision], enabled=amp):
            out = model(x)
            logits = out[0] if isinstance(out, (tuple, list)) else out
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with PeakMemory(device) as mem:
        timing = time_calls(step, batch_size, warmup, repeats, deadline, device)
    timing.peak_mem_mb = mem.peak_mb
    return timing


# --- budgeted profile of one model -----------------------------------------------------------------
def fit_batch(requested: int, floor: int, s_per_img: float, seconds_left: float, calls: int = 2) -> int:
    """Largest power-of-two fraction of ``requested`` whose ``calls`` calls (warm-up + timed) fit.

    Never below ``floor`` (the caller then reuses its batch-``floor`` measurement).
    """
    bs = requested
    while bs > floor and calls * bs * s_per_img > seconds_left:
        bs //= 2
    return max(bs, floor)


def profile_inference(model: nn.Module, size: Size, batch_sizes: Sequence[int], warmup: int, repeats: int,
                      budget_s: Optional[float] = None, device="cpu", compiled: bool = False) -> Dict[str, object]:
    """Latency at ``batch_sizes[0]`` and throughput at each further batch size, within ``budget_s``.

    The latency run gets at most a third of the budget; throughput batches are shrunk (halved) until all
    warm-up + timed calls fit in what is left, and the batch actually used is recorded. A batch that
    shrinks to the latency batch reuses the latency timing. With ``compiled`` the first call at each new
    shape (the compilation) runs before the clock starts. Out-of-memory halves the batch.
    """
    t0 = time.perf_counter()
    excluded = [0.0]  # compilation time, kept out of the budget

    def deadline(fraction=1.0):
        return None if budget_s is None else t0 + excluded[0] + budget_s * fraction

    def run(bs, fraction):
        if compiled:  # compile for this shape before the clock starts
            c = time.perf_counter()
            with torch.inference_mode():
                model(random_images(bs, size, device))
            synchronize(device)
            excluded[0] += time.perf_counter() - c
        return time_inference(model, size, bs, warmup, repeats, deadline(fraction), device)

    latency, lat_bs = run_with_backoff(lambda bs: run(bs, 1 / 3), batch_sizes[0])
    s_per_img = latency.seconds / lat_bs
    result = {"latency": latency.as_dict(), "throughput": []}
    for requested in batch_sizes[1:]:
        left = float("inf") if budget_s is None else deadline() - time.perf_counter()
        bs = fit_batch(requested, lat_bs, s_per_img, left, calls=max(1, warmup) + max(1, repeats))
        if bs <= lat_bs:
            timing, bs = latency, lat_bs
        else:
            timing, bs = run_with_backoff(lambda b: run(b, 1.0), bs)
        result["throughput"].append({"requested": requested, **timing.as_dict()})
    result["seconds_total"] = time.perf_counter() - t0
    result["compile_seconds"] = excluded[0]
    return result


def profile_train(model: nn.Module, size: Size, batch_size: int, warmup: int, repeats: int,
                  budget_s: Optional[float] = None, s_per_img_hint: Optional[float] = None, device="cpu",
                  precision: str = "fp32", channels_last: bool = False, num_classes: int = 1000
                  ) -> Dict[str, object]:
    """Training-step throughput at ``batch_size`` (shrunk to fit ``budget_s`` using ``s_per_img_hint``)."""
    t0 = time.perf_counter()
    deadline = None if budget_s is None else t0 + budget_s
    bs = batch_size
    if budget_s is not None and s_per_img_hint:
        bs = fit_batch(batch_size, 1, 3 * s_per_img_hint, budget_s)  # fwd + bwd ~ 3x a forward
    timing, bs = run_with_backoff(
        lambda b: time_train_step(model, size, b, warmup, repeats, deadline, device, precision, channels_last,
                                  num_classes), bs)
    return {"requested": batch_size, **timing.as_dict()}


def pick_threads(fn: Callable[[], object], candidates: Sequence[int], min_gain: float = 1.2
                 ) -> Tuple[int, Dict[int, float]]:
    """Set and return the intra-op thread count (of ``candidates``) under which ``fn()`` runs fastest.

    More threads must be ``min_gain`` x faster than fewer to be chosen: on a shared machine all-core
    OpenMP regions stall whenever another process takes a core (measured on a 2-core VM: 5-30x slower
    with 2 threads than with 1 while a second job ran), so a marginal gain is not worth that risk.
    Median of 3 calls after one warm-up, per candidate.
    """
    secs = {}
    for n in sorted(set(candidates)):
        torch.set_num_threads(n)
        secs[n] = time_calls(fn, 1, 1, 3).seconds
    best = min(secs)
    for n in sorted(secs):
        if secs[best] / secs[n] >= min_gain:
            best = n
    torch.set_num_threads(best)
    return best, secs


def pick_fastest(candidates: Dict[str, Callable[[], object]], repeats: int = 1) -> Tuple[str, Dict[str, float]]:
    """Time each zero-argument callable (1 warm-up + ``repeats``) and return (fastest name, seconds by name)."""
    secs = {name: time_calls(fn, 1, 1, repeats).seconds for name, fn in candidates.items()}
    return min(secs, key=secs.get), secs
