"""The published COCO top-down test protocol, each piece against hand-computed values."""
import numpy as np
import pytest
import torch

from uniformer.engine.pose_protocol import (FLIP_PAIRS, box_to_center_scale, crop_keypoints, crop_matrix, decode,
                                            flip_back,
                                            flip_test, gaussian_target, max_preds, oks, oks_nms, refine_quarter,
                                            rescore, to_image, warp_crop)
from uniformer.models.pose import TopDownSimpleHead, pose_input_size


def test_box_to_center_scale_fixes_aspect_and_pads():
    # 192x256 crop: aspect 0.75. A 30x20 box is too wide -> h = 30 / 0.75 = 40; scale = (30, 40)/200 * 1.25
    c, s = box_to_center_scale([10, 20, 30, 20], (192, 256))
    assert c.tolist() == [25, 30] and np.allclose(s, [0.1875, 0.25])
    c, s = box_to_center_scale([0, 0, 30, 80], (192, 256))  # too tall -> w = 80 * 0.75 = 60
    assert np.allclose(s, [60 / 200 * 1.25, 80 / 200 * 1.25])
    assert pose_input_size("top_down_384x288_global_base") == (288, 384)


def test_crop_matrix_maps_box_centre_to_crop_centre():
    m = crop_matrix([100, 50], [0.96, 1.28], (192, 256))  # 192 / (0.96 * 200) = 1: a pure shift
    assert np.allclose(m, [[1, 0, -4], [0, 1, 78]])
    img = np.zeros((10, 10, 3), np.uint8)
    img[4, 6] = 200
    crop = warp_crop(img, np.array([[1.0, 0, -5], [0, 1, -3]]), (4, 3))  # shift by (-5, -3): pixel -> (1, 1)
    assert crop[1, 1, 0] == 200 and crop.sum() == 600
    kp = crop_keypoints(np.array([[100.0, 50, 2], [0, 0, 0]]), m)
    assert kp.tolist() == [[96, 128, 2], [-4, 78, 0]]  # the box centre lands on the crop centre (96, 128)


def test_gaussian_target():
    t, w = gaussian_target(np.array([[10.0, 6.0], [-100, 0], [5, 5]]), np.array([1, 1, 0]),
                           image_size=(48, 64), heatmap_size=(12, 16), sigma=2)
    # joint 0: stride 4 -> (2.5 + .5, 1.5 + .5) = cell (3, 2); peak 1, a neighbour exp(-1/8)
    assert t[0, 2, 3] == 1 and t[0, 2, 4] == pytest.approx(np.exp(-1 / 8))
    assert t[0, 2, 10] == 0 and t[0, 2, 9] == pytest.approx(np.exp(-36 / 8))  # cut at 3 sigma = 6 cells
    assert w.tolist() == [1, 0, 0] and not t[1].any() and not t[2].any()  # off the map; invisible
    t, _ = gaussian_target(np.array([[-3.0, 8.0]]), np.array([2]), (48, 64), (12, 16))
    assert t[0, 2, 0] == 1  # -3/4 + 0.5 = -0.25 truncates to 0 (int(), not floor)


def test_flip_back_swaps_pairs_mirrors_and_shifts_one_column():
    hm = torch.zeros(1, 17, 1, 4)
    hm[0, 1, 0, 0] = 1  # left eye at column 0 of the mirrored input
    out = flip_back(hm)
    assert out[0, 2, 0].tolist() == [0, 0, 0, 0]  # mirrored to column 3, shifted out of the map
    hm[0, 1, 0, :] = torch.tensor([1.0, 2, 3, 4])
    assert flip_back(hm)[0, 2, 0].tolist() == [4, 4, 3, 2]  # mirror 4,3,2,1 then shift right (first repeated)
    assert flip_back(hm, shift=False)[0, 2, 0].tolist() == [4, 3, 2, 1] and len(FLIP_PAIRS) == 8


def test_flip_test_averages():
    model = lambda x: x[:, :1].expand(-1, 17, -1, -1)  # noqa: E731  heatmap = first channel
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    out = flip_test(model, x)  # (0,1,2,3 + shift(mirror(3,2,1,0)) = 0,0,1,2) / 2
    assert out[0, 0, 0].tolist() == [0, 0.5, 1.5, 2.5]


def test_decoding_argmax_refinement_and_mapping():
    hm = np.zeros((1, 2, 5, 6), np.float32)
    hm[0, 0, 2, 3], hm[0, 0, 2, 4], hm[0, 0, 1, 3] = 1, 0.5, 0.2  # right and upper neighbours higher
    preds, val = max_preds(hm)
    assert preds[0, 0].tolist() == [3, 2] and preds[0, 1].tolist() == [-1, -1] and val[0, 0, 0] == 1
    assert refine_quarter(preds, hm)[0, 0].tolist() == [3.25, 1.75]
    edge = np.zeros((1, 1, 5, 6), np.float32)
    edge[0, 0, 1, 3], edge[0, 0, 1, 4] = 1, 0.5  # y = 1 is not > 1: no refinement
    assert refine_quarter(max_preds(edge)[0], edge)[0, 0].tolist() == [3, 1]
    # heatmap 6x5, scale (0.3, 0.25) -> 60x50 px box centred at (100, 200): x = 3.25 * 10 + 100 - 30
    assert np.allclose(to_image(np.array([[3.25, 1.75]]), [100, 200], [0.3, 0.25], (6, 5)), [[102.5, 192.5]])
    kp, sc = decode(hm, np.array([[100, 200]]), np.array([[0.3, 0.25]]))
    assert np.allclose(kp[0, 0], [102.5, 192.5]) and sc.shape == (1, 2, 1)


def test_rescore_and_oks_nms():
    assert rescore(0.8, np.array([0.1, 0.5, 0.3])) == pytest.approx(0.8 * 0.4)
    assert rescore(0.8, np.array([0.1, 0.2])) == 0
    g = np.zeros((17, 3))
    same = oks(g, g[None], 100.0, np.array([100.0]))
    assert same[0] == pytest.approx(1)
    d = g.copy()
    d[:, 0] = 1  # every joint 1 px off: exp(-1 / (2 sigma)^2 / 100 / 2) averaged
    assert oks(g, d[None], 100.0, np.array([100.0]))[0] == pytest.approx(
        np.mean(np.exp(-1 / (2 * np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87,
                                          .87, .89, .89]) / 10) ** 2 / 100 / 2)))
    far = g + 1000
    kps = np.stack([g, d, far])
    assert oks_nms(kps, np.array([0.5, 0.9, 0.7]), np.array([1e6] * 3), thr=0.9) == [1, 2]  # large area: d suppresses g
    assert oks_nms(kps, np.array([0.5, 0.9, 0.7]), np.array([1e6] * 3), thr=1.0) == [1, 2, 0]


def test_head_upsamples_stride_32_to_stride_4():
    head = TopDownSimpleHead(in_channels=8, channels=4).eval()
    assert head(torch.randn(1, 8, 8, 6)).shape == (1, 17, 64, 48)
    assert [type(m).__name__ for m in head.deconv_layers] == ["ConvTranspose2d", "BatchNorm2d", "ReLU"] * 3
    assert head.deconv_layers[0].bias is None and head.deconv_layers[0].kernel_size == (4, 4)


def test_joints_mse_loss_masks_invisible_joints():
    from uniformer.models.pose import joints_mse_loss

    pred, target = torch.zeros(1, 2, 1, 2), torch.ones(1, 2, 1, 2)
    assert joints_mse_loss(pred, target, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(0.5)  # (1+1+0+0)/4
