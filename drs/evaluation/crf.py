"""Dense CRF post-processing of segmentation scores (Kraehenbuehl and Koltun, NIPS 2011).

Through ``pydensecrf2`` (the maintained build of pydensecrf). The parameters are the DRS authors'
(``DeepLabV3Plus-Pytorch/eval.py``, ``utils/crf.py``): 10 mean-field iterations, a Gaussian
(smoothness) kernel of sxy 1 and compatibility 3, a bilateral (appearance) kernel of sxy 67, srgb 3
and compatibility 4, on the unary -log(softmax). :class:`CRFPool` runs it on every core, one image
per task, with a bounded number of images in flight so that memory stays small.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from drs.util.files import usable_cores


@dataclass(frozen=True)
class CRFParams:
    iterations: int = 10
    gaussian_sxy: float = 1.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 67.0
    bilateral_srgb: float = 3.0
    bilateral_compat: float = 4.0

    def as_dict(self) -> dict:
        return asdict(self)


REFERENCE = CRFParams()


def dense_crf(image: np.ndarray, prob: np.ndarray, params: CRFParams = REFERENCE) -> np.ndarray:
    """(C, H, W) float32 marginals after the CRF, from an HxWx3 uint8 image and (C, H, W) softmax
    scores of the same size."""
    # pydensecrf: a compiled extension, imported where the CRF runs (in the CRF's own processes;
    # `drs evaluate` without --crf, and a bare GPU node, never need it)
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    classes, height, width = prob.shape
    if image.shape != (height, width, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected an {height}x{width}x3 uint8 image, got {image.shape} {image.dtype}")
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(prob.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=params.bilateral_sxy,
        srgb=params.bilateral_srgb,
        rgbim=np.ascontiguousarray(image),
        compat=params.bilateral_compat,
    )
    q = crf.inference(params.iterations)
    return np.asarray(q, dtype=np.float32).reshape(classes, height, width)


def crf_labels(image: np.ndarray, prob: np.ndarray, params: CRFParams = REFERENCE) -> np.ndarray:
    """HxW uint8 arg-max labels after the CRF."""
    return dense_crf(image, prob, params).argmax(0).astype(np.uint8)


class CRFPool:
    """CRF labels of a stream of (key, image, prob) on ``workers`` processes (default: every core
    this process may use); :meth:`submit` waits while ``2 x workers`` images are in flight and
    returns the (key, labels) pairs finished so far, in submission order; :meth:`drain` the rest."""

    def __init__(self, workers: int | None = None, params: CRFParams = REFERENCE):
        self.workers = workers or usable_cores()
        self.params = params
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        self._pending: deque[tuple[object, Future]] = deque()

    def submit(self, key, image: np.ndarray, prob: np.ndarray) -> list[tuple[object, np.ndarray]]:
        self._pending.append((key, self._pool.submit(crf_labels, image, prob, self.params)))
        done = []
        while self._pending and (len(self._pending) > 2 * self.workers or self._pending[0][1].done()):
            key, future = self._pending.popleft()
            done.append((key, future.result()))
        return done

    def drain(self) -> Iterator[tuple[object, np.ndarray]]:
        while self._pending:
            key, future = self._pending.popleft()
            yield key, future.result()

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)

    def __enter__(self) -> CRFPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
