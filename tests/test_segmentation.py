"""The published ADE20K test protocol and metrics, each piece against hand-computed values."""
import numpy as np
import pytest
import torch
import torchmetrics

from uniformer.engine.seg_metrics import ConfusionMatrix
from uniformer.engine.seg_protocol import (align_size, ms_sizes, normalize, predict, reduce_zero_label,
                                           input_size, rescale_size, resize_uint8, whole_probs)


def test_rescale_short_side_512_long_side_at_most_2048():
    assert rescale_size(480, 640) == (512, 683)      # 640 * 512/480 = 682.67 -> rounded half up
    assert rescale_size(100, 1000) == (205, 2048)    # the long side limits: factor 2.048
    assert rescale_size(1024, 768) == (683, 512)


def test_semantic_fpn_aligns_to_multiple_of_32_by_stretching():
    assert align_size(512, 683) == (512, 704)
    assert input_size(480, 640, align=True) == (512, 704)
    assert input_size(480, 640, align=False) == (512, 683)  # UperNet: no padding, no alignment


def test_multi_scale_sizes():
    # scale (int(2048 r), int(512 r)): 256, 384, 512, 640, 768, 896 short sides for a 480x640 image
    assert ms_sizes(480, 640) == [(256, 341), (384, 512), (512, 683), (640, 853), (768, 1024), (896, 1195)]


def test_reduce_zero_label():
    gt = np.array([[0, 1], [150, 2]], dtype=np.uint8)
    assert reduce_zero_label(gt).tolist() == [[255, 0], [149, 1]]


def test_resize_and_normalize():
    img = np.array([[[0, 0, 0], [100, 100, 100]]], dtype=np.uint8)  # 1 x 2
    up = resize_uint8(img, (1, 4))  # bilinear, align_corners=False: 0, 25, 75, 100
    assert up[0, :, 0].tolist() == [0, 25, 75, 100]
    x = normalize(np.full((1, 1, 3), 255, np.uint8))
    assert torch.allclose(x.flatten(), torch.tensor([(255 - 123.675) / 58.395, (255 - 116.28) / 57.12,
                                                     (255 - 103.53) / 57.375]))


class Ramp(torch.nn.Module):
    """Two-class logits at the input size: class 0 = log 3 on the right column, 0 elsewhere."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 2, *x.shape[2:])
        out[:, 0, :, -1] = np.log(3)
        return out


def test_flip_pass_is_mirrored_back():
    x = torch.zeros(1, 3, 1, 2)
    assert torch.allclose(whole_probs(Ramp(), x, (1, 2))[0, 0, 0], torch.tensor([0.5, 0.75]))
    assert torch.allclose(whole_probs(Ramp(), x, (1, 2), flip=True)[0, 0, 0], torch.tensor([0.75, 0.5]))


class WidthVote(torch.nn.Module):
    """Class 0 logit log(W_in / 512), class 1 logit 0: p0 = W / (W + 512)."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 2, *x.shape[2:])
        out[:, 0] = np.log(x.shape[-1] / 512)
        return out


def test_multi_scale_averages_softmax_probabilities():
    img = np.zeros((4, 4, 3), np.uint8)  # inputs 256 .. 896 square: p0 = 1/3, 3/7, 1/2, 5/9, 3/5, 7/11
    assert (predict(WidthVote(), img, ratios=(0.5,)) == 1).all()  # 1/3 < 1/2
    assert (predict(WidthVote(), img, ratios=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True) == 0).all()  # mean .509
    assert (predict(WidthVote(), img, ratios=(0.5, 0.75, 1.0)) == 1).all()  # mean .42


def test_confusion_matrix_metrics_by_hand():
    cm = ConfusionMatrix(num_classes=3)
    gt = np.array([[0, 0, 1, 255], [1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 2], [1, 0, 2, 0]])
    cm.add(pred, gt)
    # class 0: inter 1, gt 2, pred 3 -> IoU 1/4, acc 1/2; class 1: inter 2, gt 3, pred 3 -> 1/2, 2/3;
    # class 2: inter 1, gt 2, pred 1 -> 1/2, 1/2; aAcc 4/7 (the 255 pixel is ignored)
    s = cm.summary()
    assert s["aAcc"] == pytest.approx(100 * 4 / 7)
    assert s["mIoU"] == pytest.approx(100 * (1 / 4 + 1 / 2 + 1 / 2) / 3)
    assert s["mAcc"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 1 / 2) / 3)


def test_absent_class_is_left_out_and_images_accumulate():
    cm = ConfusionMatrix(num_classes=4)
    cm.add(np.array([0, 1]), np.array([0, 1]))
    cm.add(np.array([0, 0]), np.array([0, 1]))  # not a mean of per-image IoUs: totals over both images
    pc = cm.per_class()
    assert pc["iou"][0] == pytest.approx(2 / 3) and pc["iou"][1] == pytest.approx(1 / 2)
    assert np.isnan(pc["iou"][2:]).all()
    assert cm.summary()["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError):
        cm.add(np.zeros((2, 2)), np.zeros((2, 3)))


def test_agrees_with_torchmetrics():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 6, size=(3, 20, 30))
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = np.where(rng.random(gt.shape) < 0.6, np.minimum(gt, 5), rng.integers(0, 6, size=gt.shape))
    cm = ConfusionMatrix(num_classes=6)
    for p, g in zip(pred, gt):
        cm.add(p, g)
    t_pred, t_gt = torch.from_numpy(pred), torch.from_numpy(gt)
    iou = torchmetrics.classification.MulticlassJaccardIndex(6, average="none", ignore_index=255)(t_pred, t_gt)
    acc = torchmetrics.classification.MulticlassAccuracy(6, average="none", ignore_index=255)(t_pred, t_gt)
    a_acc = torchmetrics.classification.MulticlassAccuracy(6, average="micro", ignore_index=255)(t_pred, t_gt)
    pc = cm.per_class()
    assert np.allclose(pc["iou"], iou.numpy()) and np.allclose(pc["acc"], acc.numpy())
    assert cm.summary()["aAcc"] == pytest.approx(100 * a_acc.item())
    assert cm.summary()["mIoU"] == pytest.approx(100 * iou.mean().item())


def test_loss_counts_ignored_pixels_in_the_mean_and_weights_aux():
    from uniformer.models.segmentation import segmentation_loss

    logits = torch.zeros(1, 2, 1, 2)  # uniform over 2 classes: CE = log 2 per labelled pixel
    label = torch.tensor([[[0, 255]]])
    assert segmentation_loss({"decode": logits}, label).item() == pytest.approx(np.log(2) / 2)
    assert segmentation_loss({"decode": logits, "aux": logits}, label).item() == pytest.approx(1.4 * np.log(2) / 2)


class Recorder(torch.nn.Module):
    """Records the network input sizes; constant logits."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[2:]))
        return torch.zeros(x.shape[0], 2, *x.shape[2:])


def test_predict_feeds_the_published_input_sizes():
    img = np.zeros((480, 640, 3), np.uint8)
    rec = Recorder()
    assert predict(rec, img).shape == (480, 640) and rec.sizes == [(512, 683)]  # UperNet: no alignment
    rec = Recorder()
    predict(rec, img, align=True)
    assert rec.sizes == [(512, 704)]  # Semantic FPN
    rec = Recorder()
    predict(rec, img, ratios=(0.5, 1.0), flip=True)
    assert rec.sizes == [(256, 341), (256, 341), (512, 683), (512, 683)]
