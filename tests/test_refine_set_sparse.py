"""RefineSet transforms only the stored classes' channels: its items are exactly those of the dense
path (every class's channel through the same transforms), ties, unordered classes and images
without classes included."""

import h5py
import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from drs.data.datasets import RefineSet, arg_max_only
from drs.data.transforms import normalize
from drs.data.voc import VOCDataset
from drs.store.writer import MapStoreWriter


def dense_item(data: RefineSet, index: int):
    image_id = data.voc.ids[index]
    image = tv_tensors.Image(torch.from_numpy(data.voc.load_image(image_id)).permute(2, 0, 1))
    target = tv_tensors.Image(torch.from_numpy(arg_max_only(data._store.dense(image_id))))
    image, target = data.geometric(data.jitter(image), target)
    return normalize(image.as_subclass(torch.Tensor)), target.as_subclass(torch.Tensor)


@pytest.mark.parametrize("random_crop", [True, False])
def test_sparse_targets_equal_the_dense_path(tiny_dataset, tmp_path, random_crop):
    voc = VOCDataset(tiny_dataset, "train")
    rng = np.random.default_rng(0)
    store = tmp_path / "maps.h5"
    choices = [[], [3, 1], [2], [1, 2, 3], [3], [2, 1]]
    with MapStoreWriter(
        store,
        class_names=voc.class_names,
        scales=[48],
        flip=False,
        stage="cam",
        split="train",
        dataset=str(tiny_dataset),
    ) as writer:
        for n, image_id in enumerate(voc.ids):
            classes = choices[n % len(choices)]
            h, w = voc.load_image(image_id).shape[:2]
            maps = rng.integers(0, 4, (len(classes), h, w)) / 3.0  # coarse values: many ties and zeros
            writer.add(image_id, classes, maps.astype(np.float32))
    with h5py.File(store, "r+") as f:  # another writer's order: classes not ascending
        for image_id in f["maps"]:
            dset = f["maps"][image_id]
            if len(dset.attrs["classes"]) > 1:
                dset[...] = dset[()][::-1]
                dset.attrs["classes"] = dset.attrs["classes"][::-1]
    data = RefineSet(voc, store, 40, 32, random_crop)
    for index in range(len(voc)):
        torch.manual_seed(index)
        image, target = data[index]
        torch.manual_seed(index)
        want_image, want_target = dense_item(data, index)
        assert torch.equal(image, want_image)
        assert target.dtype == want_target.dtype and torch.equal(target, want_target), voc.ids[index]
