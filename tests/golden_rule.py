"""The golden-weights rule of tests/data/golden/README.md: deterministic weights per state-dict key."""
import zlib

import torch


def rule_tensor(key: str, like: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    shape, leaf = like.shape, key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=like.dtype)
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf in ("gamma_1", "gamma_2"):
        return 0.1 + 0.01 * torch.randn(shape, generator=g)
    if leaf == "bias":
        return 0.02 * torch.randn(shape, generator=g)
    if leaf == "weight" and len(shape) == 1:
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.02 * torch.randn(shape, generator=g)


def apply_rule(model: torch.nn.Module) -> torch.nn.Module:
    sd = {k: rule_tensor(k, v) for k, v in model.state_dict().items()}
    model.load_state_dict(sd, strict=True)
    return model.eval()


def golden_input(shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))
