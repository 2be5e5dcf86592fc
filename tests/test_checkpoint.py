"""Official checkpoint formats load strictly; broken or mismatched files give errors that name the problem."""
import argparse

import pytest
import timm
import torch

from uniformer import CheckpointError, load_checkpoint


@pytest.fixture(scope="module")
def model():
    return timm.create_model("uniformer_xxs").eval()


def _random_state_dict(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


@pytest.mark.parametrize("wrap", ["model", "model_state", "state_dict", None])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_layouts_load_strictly(tmp_path, model, wrap, prefix):
    sd = {prefix + k: v for k, v in _random_state_dict(model).items()}
    obj = {wrap: sd, "epoch": 299} if wrap else sd
    if wrap == "model":  # DeiT checkpoints carry their argparse namespace
        obj["args"] = argparse.Namespace(model="uniformer_xxs", lr=4e-4)
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    fresh = timm.create_model("uniformer_xxs")
    load_checkpoint(fresh, path)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[prefix + k]), k


def test_safetensors(tmp_path, model):
    from safetensors.torch import save_file
    sd = _random_state_dict(model, 1)
    save_file(sd, tmp_path / "w.safetensors")
    fresh = load_checkpoint(timm.create_model("uniformer_xxs"), tmp_path / "w.safetensors")
    assert torch.equal(fresh.cls_token, sd["cls_token"])


def test_mismatch_lists_keys(tmp_path):
    plain = timm.create_model("uniformer_small")
    torch.save({"model": plain.state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(timm.create_model("uniformer_small_tl"), tmp_path / "plain.pth")
    assert "missing keys (2)" in str(e.value) and "aux_head.weight" in str(e.value)
    assert "plain.pth" in str(e.value)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(timm.create_model("uniformer_small", num_classes=10), tmp_path / "plain.pth")
    assert "mis-shaped keys (2)" in str(e.value) and "head.weight: checkpoint (1000, 512) vs model (10, 512)" in str(e.value)
    # strict=False loads what fits and leaves the rest
    m = load_checkpoint(timm.create_model("uniformer_small", num_classes=10), tmp_path / "plain.pth", strict=False)
    assert torch.equal(m.patch_embed1.proj.weight, plain.patch_embed1.proj.weight)


def test_unexpected_keys(tmp_path, model):
    sd = _random_state_dict(model)
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): extra.weight"):
        load_checkpoint(timm.create_model("uniformer_xxs"), tmp_path / "x.pth")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_refuses_arbitrary_unpickling(tmp_path, model, capsys):
    torch.save({"model": model.state_dict(), "payload": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused, it needs arbitrary unpickling"):
        load_checkpoint(timm.create_model("uniformer_xxs"), tmp_path / "evil.pth")
    assert "pwned" not in capsys.readouterr().out


def test_broken_and_missing_files(tmp_path):
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(CheckpointError, match="trunc.pth: cannot be read"):
        load_checkpoint(timm.create_model("uniformer_xxs"), tmp_path / "trunc.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(timm.create_model("uniformer_xxs"), tmp_path / "nope.pth")


def test_pretrained_true_never_downloads(tmp_path, model):
    with pytest.raises(ValueError, match="no weights are downloaded"):
        timm.create_model("uniformer_xxs", pretrained=True)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    m = timm.create_model("uniformer_xxs", pretrained=True, pretrained_cfg_overlay=dict(file=str(tmp_path / "w.pth")))
    assert torch.equal(m.cls_token, model.cls_token)
