"""Multi-process (multi-GPU) runs under ``torchrun``: process group, ranks, devices, data sharding.

A stage launched by ``torchrun --standalone --nproc_per_node=N -m drs <stage> ...`` finds
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment; :func:`init` then joins the process group
(nccl on CUDA, gloo on the CPU), each process uses ``cuda:LOCAL_RANK`` (or the CPU), and only rank 0
logs at INFO level. Launched by plain ``python -m drs``, every helper here answers as for one
process and nothing is initialised, so the single-process path runs unchanged.

What the training loop (:func:`drs.training.loop.fit`) takes from here:

* :func:`shard_loader`: the loader of one process: a :class:`DistributedSampler` over the same
  dataset (the epoch's order is a permutation seeded by (seed, epoch), split so that the N
  processes' batches at step k together hold exactly the images of the one-process batch k), a
  per-process batch of global batch / N (an error if N does not divide it), and each image's
  augmentation drawn from a seed of its own (:class:`SeededSamples`), so that what an image gets
  does not depend on which process loads it;
* :func:`convert_sync_batchnorm`: batch norm over the global batch (torch's SyncBatchNorm on
  CUDA; on the CPU :class:`CpuSyncBatchNorm` all-reduces the statistics through gloo itself, as
  torch's refuses CPU tensors).

The module imports torch: import it inside functions where ``drs --help`` must stay fast.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from drs.errors import UserError

log = logging.getLogger("drs.distributed")

_ENV_KEYS = ("RANK", "WORLD_SIZE")


# -- process group ---------------------------------------------------------------------------------
def launched() -> bool:
    """Whether this process was started by torchrun (or anything setting RANK and WORLD_SIZE)."""
    return all(key in os.environ for key in _ENV_KEYS)


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    if initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1)) if launched() else 1


def rank() -> int:
    if initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0)) if launched() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if launched() else 0


def is_main() -> bool:
    """Rank 0 (or the only process): the one that logs and writes the outputs."""
    return rank() == 0


def backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if not launched():
        return torch.device("cuda")
    index, count = local_rank(), torch.cuda.device_count()
    if index >= count:
        raise UserError(
            f"process with LOCAL_RANK {index} but only {count} CUDA device(s) visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
            "start at most one process per GPU (torchrun --nproc_per_node, config ddp.nproc)"
        )
    return torch.device("cuda", index)


def init() -> bool:
    """Join the process group when launched by torchrun (idempotent); False for a plain process.

    Sets this process's CUDA device, and quiets INFO logging on every rank but 0.
    """
    if not launched():
        return False
    if initialized():
        return True
    if not dist.is_available():
        raise UserError("launched by torchrun, but this PyTorch build has no torch.distributed")
    where = device()
    if where.type == "cuda":
        torch.cuda.set_device(where)
    dist.init_process_group(backend=backend())
    if dist.get_rank() != 0:
        logging.getLogger("drs").setLevel(logging.WARNING)
    log.info("process group: %d processes, backend %s", dist.get_world_size(), dist.get_backend())
    return True


def barrier() -> None:
    """Wait for every process (a no-op for one process)."""
    if not initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (at the end of a command)."""
    if initialized():
        dist.destroy_process_group()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over the processes (a new tensor; ``value`` itself for one process)."""
    if not initialized() or dist.get_world_size() == 1:
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def shard(items: Sequence, num: int | None = None, index: int | None = None) -> list:
    """This process's contiguous share of ``items`` (the first ones get one more when uneven)."""
    num = world_size() if num is None else num
    index = rank() if index is None else index
    base, extra = divmod(len(items), num)
    start = index * base + min(index, extra)
    return list(items[start : start + base + (index < extra)])


# -- data ------------------------------------------------------------------------------------------
def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from non-negative integers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededSamples(Dataset):
    """``dataset[i]`` with the random generators (torch CPU, numpy, random) seeded from
    (``epoch_seed``, i) for the call and restored after it: an image's augmentation then depends on
    the epoch and the image only, not on the process or data worker that loads it, nor on the
    images loaded before it."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.epoch_seed = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        seed = derive_seed(self.epoch_seed, index)
        torch_state = torch.get_rng_state()
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
            np.random.set_state(np_state)


def shard_loader(
    loader: DataLoader, seed: int, num: int | None = None, index: int | None = None, per_image_seeds: bool = True
) -> DataLoader:
    """The loader of process ``index`` of ``num`` for a training ``loader`` (shuffling or not).

    The sampler is a :class:`DistributedSampler` seeded with ``seed`` (call its ``set_epoch``): at
    step k the processes' batches together hold the images of the one-process batch k of that
    permutation. ``drop_last`` is the loader's, for the sampler and the batches alike.
    With ``per_image_seeds`` the dataset is wrapped in :class:`SeededSamples` (set its
    ``epoch_seed`` every epoch).
    """
    num = world_size() if num is None else num
    index = rank() if index is None else index
    batch = loader.batch_size
    if batch is None:
        raise ValueError("shard_loader needs a DataLoader with a batch_size")
    if batch % num:
        raise UserError(
            f"batch size {batch} cannot be split evenly across {num} processes: the global batch is "
            f"divided between the processes; use a batch size that is a multiple of {num}, or "
            f"another process count (ddp.nproc, torchrun --nproc_per_node)"
        )
    data = SeededSamples(loader.dataset) if per_image_seeds else loader.dataset
    sampler = DistributedSampler(
        data,
        num_replicas=num,
        rank=index,
        shuffle=isinstance(loader.sampler, RandomSampler),
        seed=seed,
        drop_last=loader.drop_last,
    )
    options = {}
    if loader.num_workers:
        options["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(
        data,
        batch_size=batch // num,
        sampler=sampler,
        drop_last=loader.drop_last,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        timeout=loader.timeout,
        multiprocessing_context=loader.multiprocessing_context,
        persistent_workers=False,  # workers must see each epoch's epoch_seed
        generator=torch.Generator(),
        **options,
    )


# -- batch norm across processes --------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes, differentiable: the gradient is summed the same way."""

    @staticmethod
    def forward(ctx, tensor, group):
        ctx.group = group
        out = tensor.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the processes' whole batch for CPU tensors (gloo), which torch's
    SyncBatchNorm refuses: in training, the batch mean and variance are reduced over the processes
    (in float64, two passes) with autograd through the reduction, and the running statistics follow
    the global batch as plain batch norm's would on one process. In evaluation, or for one process,
    it is plain batch norm."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    def _check_input_dim(self, input) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and initialized() and dist.get_world_size(self.process_group) > 1):
            return super().forward(input)
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        shape = [1, channels] + [1] * (input.dim() - 2)
        count = torch.tensor([input.numel() // max(1, channels)], dtype=torch.float64)
        dist.all_reduce(count, group=self.process_group)
        n = float(count)
        x = input.double()
        mean = _AllReduceSum.apply(x.sum(dims), self.process_group) / n
        centered = x - mean.view(shape)
        var = _AllReduceSum.apply((centered * centered).sum(dims), self.process_group) / n
        out = (centered * torch.rsqrt(var + self.eps).view(shape)).to(input.dtype)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var.detach() * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        return out


def convert_sync_batchnorm(model: nn.Module) -> Callable[[], None]:
    """Replace every batch-norm layer of ``model`` (in place) by one normalising over all the
    processes' batches (torch's SyncBatchNorm on CUDA, :class:`CpuSyncBatchNorm` on the CPU) that
    shares its parameters and buffers (an optimizer built before keeps working); returns a function
    that puts the original layers back. Call on every process, after moving the model to its device."""
    on_cpu = not any(t.is_cuda for t in model.parameters())
    # the CPU layers reduce on a group of their own, apart from DistributedDataParallel's reductions
    group = dist.new_group(backend="gloo") if on_cpu and initialized() else None
    replaced: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            synced = isinstance(child, (nn.SyncBatchNorm, CpuSyncBatchNorm))
            if synced or not isinstance(child, nn.modules.batchnorm._BatchNorm):
                continue
            args = (child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats, group)
            sync = CpuSyncBatchNorm(*args) if on_cpu else nn.SyncBatchNorm(*args)
            if child.affine:
                sync.weight = child.weight
                sync.bias = child.bias
            sync.running_mean = child.running_mean
            sync.running_var = child.running_var
            sync.num_batches_tracked = child.num_batches_tracked
            sync.train(child.training)
            setattr(parent, name, sync)
            replaced.append((parent, name, child))

    def restore() -> None:
        for parent, name, original in replaced:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)
        replaced.clear()

    return restore


# -- map store parts ----------------------------------------------------------------------------------
def part_path(out: str | Path, index: int, num: int) -> Path:
    """The hidden file process ``index`` of ``num`` writes its share of the store ``out`` to."""
    out = Path(out)
    return out.parent / f".{out.name}.part{index}-of-{num}"


def stale_parts(out: str | Path) -> list[Path]:
    """Parts (and their writers' partial files) left by an extraction into ``out`` that was killed."""
    out = Path(out)
    return sorted([*out.parent.glob(f".{out.name}.part*-of-*"), *out.parent.glob(f"..{out.name}.part*-of-*.partial")])
