"""Localization maps from raw class maps (drs.extract): ReLU, upsampling, per-class max
normalisation, the flipped pass flipped back, the maximum over scales; on hand-made maps."""

from __future__ import annotations

import numpy as np
import torch

from drs.inference.maps import combine, forward_scales


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# raw maps of 3 classes at 2x2; the image has classes 1 and 2 (class 3 is not kept)
RAW = t(
    [
        [[0.0, 1.0], [2.0, 4.0]],  # class 1: max 4
        [[-1.0, 0.5], [0.0, 0.25]],  # class 2: max 0.5 after ReLU
        [[100.0, 0.0], [0.0, 0.0]],  # class 3: absent from the image
    ]
)


def test_each_kept_class_is_divided_by_its_own_maximum():
    out = combine([RAW], np.array([1, 2]), (2, 2))
    expected = t([[[0.0, 0.25], [0.5, 1.0]], [[0.0, 1.0], [0.0, 0.5]]])
    assert out.shape == (2, 2, 2) and float(out.max()) <= 1.0  # a peak is 1 at most, never above
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_only_the_images_classes_are_kept_in_order():
    out = combine([RAW], np.array([2, 3]), (2, 2))
    torch.testing.assert_close(out[0], t([[0.0, 1.0], [0.0, 0.5]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], t([[1.0, 0.0], [0.0, 0.0]]), atol=1e-4, rtol=0)


def test_all_zero_or_negative_map_stays_zero():
    raw = torch.stack([-torch.ones(2, 2), torch.zeros(2, 2)])
    out = combine([raw], np.array([1, 2]), (2, 2))
    assert torch.equal(out, torch.zeros(2, 2, 2))


def test_maximum_over_scales_after_each_is_normalised():
    small = RAW  # class 1 -> [[0, .25], [.5, 1]]
    other = t([[[3.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [2.0, 0.0]], [[0.0] * 2] * 2])  # class 1 -> [[1, 0], [0, 1/3]]
    out = combine([small, other], np.array([1, 2]), (2, 2))
    expected = t([[[1.0, 0.25], [0.5, 1.0]], [[0.0, 1.0], [1.0, 0.5]]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)


def test_maps_are_upsampled_to_the_image_size_bilinearly():
    # a 1x2 map [0, 1] of one class, upsampled to 1x4 (align_corners=False): 0, .25, .75, 1
    raw = t([[[0.0, 2.0]]])
    out = combine([raw], np.array([1]), (1, 4))
    assert out.shape == (1, 1, 4)
    torch.testing.assert_close(out[0, 0], t([0.0, 0.25, 0.75, 1.0]), atol=1e-4, rtol=0)
    # and to a non-square size of another scale's maps
    out = combine([raw, t([[[1.0, 1.0], [1.0, 1.0]]])], np.array([1]), (3, 4))
    assert out.shape == (1, 3, 4) and torch.allclose(out, torch.ones(1, 3, 4), atol=1e-4)


def test_refined_maps_are_neither_clipped_nor_normalised():
    """The refiner's outputs enter as they are (the reference's pseudo_seg_label_gen.py): only
    negatives are cut (its maximum starts from 0), nothing is max-normalised or clipped at 1."""
    raw = t([[[0.2, 0.4], [1.5, -0.3]]])
    out = combine([raw], np.array([1]), (2, 2), normalize=False)
    torch.testing.assert_close(out, t([[[0.2, 0.4], [1.5, 0.0]]]))


class _PositionModel:
    """class_maps(x) = x's first channel plus a ramp along the width: not flip-equivariant,
    so a flipped pass that is not flipped back shows."""

    def class_maps(self, batch):
        ramp = torch.arange(batch.shape[-1], dtype=batch.dtype) * 10
        return batch[:, :1] + ramp


def test_forward_scales_resizes_and_flips_the_flipped_pass_back():
    image = torch.zeros(3, 2, 2)
    image[0] = t([[1.0, 2.0], [3.0, 4.0]])
    (outputs,) = forward_scales(_PositionModel(), [image], scales=[2, 4], flip=True, device=torch.device("cpu"))
    assert [tuple(o.shape) for o in outputs] == [(1, 2, 2), (1, 2, 2), (1, 4, 4), (1, 4, 4)]
    plain, flipped = outputs[0][0], outputs[1][0]
    torch.testing.assert_close(plain, t([[1.0, 12.0], [3.0, 14.0]]))
    # the model saw the mirrored image; its output, mirrored back, puts the image where it was
    # (the position-dependent ramp is what ends up mirrored)
    torch.testing.assert_close(flipped, t([[11.0, 2.0], [13.0, 4.0]]))
    # the 4x4 scale: the image resized bilinearly (align_corners=False), by hand
    resized = t([[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]])
    torch.testing.assert_close(outputs[2][0], resized + t([0.0, 10.0, 20.0, 30.0]))
    # without flip, one map per scale
    (outputs,) = forward_scales(_PositionModel(), [image], scales=[2, 4], flip=False, device=torch.device("cpu"))
    assert len(outputs) == 2


def test_forward_scales_keeps_the_images_of_a_batch_apart():
    a, b = torch.zeros(3, 2, 2), torch.ones(3, 4, 4)
    out_a, out_b = forward_scales(_PositionModel(), [a, b], scales=[2], flip=False, device=torch.device("cpu"))
    torch.testing.assert_close(out_a[0][0], t([[0.0, 10.0], [0.0, 10.0]]))
    torch.testing.assert_close(out_b[0][0], t([[1.0, 11.0], [1.0, 11.0]]))
