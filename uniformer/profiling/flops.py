"""Parameters and FLOPs as the paper counts them.

fvcore counts one fused multiply-add as one FLOP (the paper's convention) and counts conv, linear,
matmul and norms. It has no handle for ``aten::scaled_dot_product_attention`` (it would count our
fused attention as zero), so we add one that counts the two products q k^T and attn v exactly as the
explicit path's matmuls are counted.
"""
from collections import Counter
from typing import Dict, Sequence

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape


def sdpa_flop_jit(inputs, outputs) -> Counter:
    """q (..., L, E) k (..., S, E) v (..., S, Ev): L*S*E + L*S*Ev multiply-adds per batch*head."""
    q, k, v = (get_shape(inputs[i]) for i in range(3))
    batch = 1
    for d in q[:-2]:
        batch *= d
    L, E = q[-2], q[-1]
    S, Ev = k[-2], v[-1]
    return Counter({"matmul": batch * L * S * (E + Ev)})


def flop_analysis(model: nn.Module, inputs: torch.Tensor) -> FlopCountAnalysis:
    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int], modules: Sequence[str] = ()) -> Dict[str, float]:
    """fvcore FLOPs of ``model`` (eval mode, batch 1) for one input of ``input_shape`` (without batch dim).

    Returns ``gflops`` (total, multiply-adds / 1e9), the per-operator split in GFLOPs and, for each submodule
    name in ``modules``, its share (``gflops_by_module``; from the same trace).
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, *input_shape)
        # random input: the light models' token pruning depends on the data (the count does not, but ties would)
        x.normal_(generator=torch.Generator().manual_seed(0))
        analysis = flop_analysis(model, x)
        total = analysis.total()
        by_op = {k: v / 1e9 for k, v in analysis.by_operator().items()}
        by_module = {m: analysis.by_module()[m] / 1e9 for m in modules}
    finally:
        model.train(was_training)
    return {"gflops": total / 1e9, "gflops_by_operator": by_op, "gflops_by_module": by_module}


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def head_gmacs(model: nn.Module) -> float:
    """Multiply-adds (G) of a linear classifier, the only count that differs between one network's heads
    (Kinetics-400 / 600, Something-Something: 400 / 600 / 174 classes); 0 for any other head."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return head.weight.numel() / 1e9 if isinstance(head, nn.Linear) else 0.0
