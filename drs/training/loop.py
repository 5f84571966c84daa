"""One training loop for every trainer (classifier, refiner, segmenter).

What it gives each of them: the device chosen automatically (CUDA, with automatic mixed precision,
when present; else the CPU), fixed seeds, a checkpoint after every epoch (``last.pt``, written
atomically) and resumption from it after an interruption, and a log line every N steps with loss,
images/s and ETA (a progress bar when stderr is a terminal).

Determinism: the data order and augmentation of epoch e depend only on (seed, e), so a run resumed
from its epoch checkpoint ends where an uninterrupted run ends (on the CPU, bit for bit).

Several processes: launched by ``torchrun --nproc_per_node=N`` (see :mod:`drs.runtime.distributed`), the same
call trains with DistributedDataParallel: each process takes 1/N of every global batch (a
DistributedSampler reseeded every epoch), batch norm is synchronised across processes
(``sync_batchnorm``), gradients are averaged, and only rank 0 logs and writes checkpoints. Each
image's augmentation is then drawn from its own seed (seed, epoch, image) instead of one stream per
epoch, so the result does not depend on N: one process with ``nproc_invariant=True`` and N processes
with the same global batch give the same model, up to floating-point rounding.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from drs.config.settings import LoopSettings
from drs.runtime import distributed as ddp
from drs.runtime.device import amp_dtype, describe_device, pick_device, seed_everything
from drs.store.model_files import LAST_CHECKPOINT, atomic_save, read_epoch_checkpoint
from drs.training import history as run_history
from drs.training.resume import resume_mismatch
from drs.util.progress import StepProgress

log = logging.getLogger("drs.train")


class _StepLoss(nn.Module):
    """The model and its loss as one module, so that DistributedDataParallel's forward runs the
    whole of ``step_loss`` (which may call any method of the model, not only ``forward``)."""

    def __init__(self, model: nn.Module, step_loss: Callable, device: torch.device):
        super().__init__()
        self.model = model
        self.step_loss = step_loss
        self.device = device

    def forward(self, batch):
        return self.step_loss(self.model, batch, self.device)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    step_loss: Callable[[nn.Module, object, torch.device], torch.Tensor],
    settings: LoopSettings,
    out_dir: str | Path,
    *,
    lr_at_epoch: Callable[[int], float] | None = None,
    lr_at_step: Callable[[int], float] | None = None,
    after_step: Callable[[int], None] | None = None,
    name: str = "train",
    device: torch.device | None = None,
    extra_state: dict | None = None,
    stop_after_steps: int | None = None,
    sync_batchnorm: bool = True,
    nproc_invariant: bool | None = None,
    find_unused_parameters: bool = False,
) -> nn.Module:
    """Train ``model`` for ``settings.epochs`` epochs, resuming from ``out_dir/last.pt`` if present.

    ``step_loss(model, batch, device)`` returns the loss of one batch: its mean, or a pair (sum,
    number of elements summed) when that number varies (see :func:`_batch_loss`: under torchrun the
    pair keeps the gradient that of the global batch). ``lr_at_epoch(e)`` gives the
    multiplier of every parameter group's base learning rate for epoch e (0-based); ``lr_at_step(i)``
    multiplies it further for the i-th step of the whole run (0-based: a per-iteration schedule, as
    DeepLab's poly). ``settings.max_steps`` ends the run after that many steps; ``after_step(n)`` is
    called after the n-th optimizer step of the run (1-based; e.g. a periodic validation, which
    must leave the model in training mode). ``loader`` must
    use a ``torch.Generator`` (its ``generator``), reseeded here at each epoch.
    ``extra_state`` is saved in every checkpoint; a checkpoint is resumed only when its
    ``extra_state`` equals this run's (same settings, data and model: the trainers put the
    fingerprint of their data there, see :mod:`drs.data.fingerprint`), else training starts over
    and the log says what differs. An unreadable ``last.pt`` is moved aside (see
    :func:`read_epoch_checkpoint`) and training starts over.
    ``stop_after_steps`` interrupts the run (raising KeyboardInterrupt) after that many steps in
    total, to test resumption.

    Under torchrun (several processes; see the module docstring): ``sync_batchnorm`` computes
    batch-norm statistics over the global batch (SyncBatchNorm) as one process would, else each
    process normalises by its own share; ``find_unused_parameters`` is DistributedDataParallel's, for
    models with parameters that some steps do not use. The loader's batch size is the global batch
    (it must be a multiple of the process count). ``nproc_invariant`` (default: on under torchrun,
    off for a plain process, which keeps the historic one random stream per epoch) draws the epoch's
    order from a DistributedSampler and each image's augmentation from its own seed, which makes the
    result independent of the number of processes (and of data-loading workers).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    distributed = ddp.init()
    world, rank = ddp.world_size(), ddp.rank()
    invariant = distributed if nproc_invariant is None else nproc_invariant
    if device is None:
        device = ddp.device() if distributed else pick_device()
    where = describe_device(device)
    if distributed:
        where += f", {world} processes (DistributedDataParallel, {ddp.backend()})"
    log.info("%s on %s", name, where)
    model.to(device)
    # mixed precision on CUDA: bfloat16 where the GPU has it (no loss scaling), else float16 with a
    # GradScaler (drs.runtime.device.amp_dtype); fp32 on the CPU
    amp = amp_dtype(device) if settings.amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])

    start_epoch = 0
    last = out_dir / LAST_CHECKPOINT
    state = read_epoch_checkpoint(last, name)
    reason = None if state is None else resume_mismatch(state, extra_state or {})
    if reason is not None:
        log.warning("%s: not resuming from %s, starting afresh: %s", name, last, reason)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        log.info("%s: resuming from %s after epoch %d of %d", name, last, start_epoch, settings.epochs)
    # the curve beside the model (drs.training.history): the resumed epochs' rows kept, rank 0 writes
    history = run_history.History(
        out_dir, start_epoch if state is not None else None, run_history.TENSORBOARD, enabled=ddp.is_main()
    )

    generator = loader.generator
    if generator is None:
        raise ValueError("fit() needs a DataLoader built with generator=torch.Generator()")
    if distributed or invariant:
        loader = ddp.shard_loader(loader, settings.seed * 100_003, world, rank, per_image_seeds=invariant)
        generator = loader.generator
        log.info(
            "%s: global batch %d = %d process(es) x %d, %s",
            name,
            loader.batch_size * world,
            world,
            loader.batch_size,
            "augmentation seeded per image" if invariant else "one augmentation stream per process",
        )
    forward = None  # under torchrun: DistributedDataParallel over the model and step_loss
    restore_batchnorm = None
    if distributed:
        if sync_batchnorm and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            restore_batchnorm = ddp.convert_sync_batchnorm(model)
        forward = nn.parallel.DistributedDataParallel(
            _StepLoss(model, step_loss, device),
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused_parameters,
        )
    try:
        _epochs(
            model,
            forward,
            optimizer,
            scaler,
            loader,
            generator,
            step_loss,
            settings,
            last,
            start_epoch,
            lr_at_epoch=lr_at_epoch,
            lr_at_step=lr_at_step,
            after_step=after_step,
            name=name,
            device=device,
            extra_state=extra_state,
            stop_after_steps=stop_after_steps,
            amp=amp,
            history=history,
        )
    finally:
        history.close()
        if restore_batchnorm is not None:
            restore_batchnorm()  # the caller gets its own batch-norm layers back, trained
    return model


def _epochs(
    model,
    forward,
    optimizer,
    scaler,
    loader,
    generator,
    step_loss,
    settings,
    last,
    start_epoch,
    *,
    lr_at_epoch,
    lr_at_step,
    after_step,
    name,
    device,
    extra_state,
    stop_after_steps,
    amp,
    history,
) -> None:
    """fit's epochs from ``start_epoch`` on (``forward``: the DistributedDataParallel module or None).
    An optimizer step takes ``settings.accumulation`` loader batches, their gradients summed (each
    loss divided by the count); a step counts as one in every schedule, limit and log."""
    world, rank = ddp.world_size(), ddp.rank()
    accumulation = settings.accumulation
    steps = len(loader) // accumulation
    progress = StepProgress(
        log,
        name,
        steps * max(0, settings.epochs - start_epoch),
        settings.log_every,
        sys.stderr.isatty() and ddp.is_main(),
    )
    total_steps = 0
    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        seed = settings.seed * 100_003 + epoch
        generator.manual_seed(seed)
        if isinstance(loader.sampler, ddp.DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if isinstance(loader.dataset, ddp.SeededSamples):
            loader.dataset.epoch_seed = seed
        # model-side randomness (dropout): one stream per process, rank 0's that of a single process
        seed_everything(seed if rank == 0 else ddp.derive_seed(seed, rank))
        factor = lr_at_epoch(epoch) if lr_at_epoch else 1.0
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        (forward or model).train()
        # losses stay on the device between the steps that log (no host synchronisation per step):
        # the running mean, and the loss sum, steps, images and start time of the next history row
        running = torch.zeros((), device=device)
        interval = [torch.zeros((), device=device), 0, 0, time.perf_counter()]
        first_of_interval = epoch * steps + 1
        batches = iter(loader)
        for step in range(1, steps + 1):
            run_step = epoch * steps + step - 1  # 0-based, over the whole run
            if settings.max_steps is not None and run_step >= settings.max_steps:
                break
            if lr_at_step is not None:
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor * lr_at_step(run_step)
            optimizer.zero_grad(set_to_none=True)
            reported = torch.zeros((), device=device)
            images = 0
            for part_index in range(accumulation):
                batch = next(batches)
                # under DistributedDataParallel, gradients are all-reduced once a step: at its last batch
                sync = forward is None or part_index == accumulation - 1
                with contextlib.nullcontext() if sync else forward.no_sync():
                    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                        out = step_loss(model, batch, device) if forward is None else forward(batch)
                    # every process sees the global batch's mean loss: all log it, and stop on it together
                    loss, part = _batch_loss(out, distributed=forward is not None)
                    scaler.scale(loss if accumulation == 1 else loss / accumulation).backward()
                reported = reported + part.detach().float() / accumulation
                images += len(batch[0]) * world if isinstance(batch, (list, tuple)) else 0
            scaler.step(optimizer)
            scaler.update()
            running = reported if step == 1 else 0.9 * running + 0.1 * reported
            total_steps += 1
            extra = after_step(run_step + 1) if after_step is not None else None
            interval[0] = interval[0] + reported
            interval[1] += 1
            interval[2] += images
            last_step = step == steps or (settings.max_steps is not None and run_step + 1 >= settings.max_steps)
            row_due = bool(extra) or last_step or (run_step + 1) % settings.log_every == 0
            shown = None
            if row_due or progress.due(step, steps):
                shown, summed = torch.stack([running, interval[0]]).tolist()  # the one synchronisation
                if not math.isfinite(summed):
                    raise FloatingPointError(
                        f"{name}: loss is {summed} at epoch {epoch + 1}, steps {first_of_interval}-{run_step + 1}"
                    )
            lr = optimizer.param_groups[0]["lr"]
            progress.step(epoch + 1, settings.epochs, step, steps, shown, lr, images)
            if row_due:
                now = time.perf_counter()
                history.add(
                    epoch=epoch + 1,
                    step=run_step + 1,
                    loss=summed / interval[1],
                    lr=lr,
                    images_per_s=interval[2] / max(now - interval[3], 1e-9),
                    seconds=now - started,
                    **(extra or {}),
                )
                interval = [torch.zeros((), device=device), 0, 0, now]
                first_of_interval = run_step + 2
            if stop_after_steps is not None and total_steps >= stop_after_steps:
                raise KeyboardInterrupt(f"{name}: stopped after {total_steps} steps (stop_after_steps)")
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch + 1,
            **(extra_state or {}),
        }
        atomic_save(state, last)  # rank 0 only
        ddp.barrier()
        log.info(
            "%s: epoch %d/%d done, loss %.4f, checkpoint %s", name, epoch + 1, settings.epochs, float(running), last
        )


def _batch_loss(out, distributed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to backpropagate, the global batch's mean loss) from what step_loss returned: a
    mean over the batch, or a pair (sum, count) for a mean over a number of elements that varies
    between batches (e.g. the pixels not ignored by a segmentation loss). Under
    DistributedDataParallel, which averages the processes' gradients, a per-process mean is right
    when every process averages over as many elements; a (sum, count) pair is divided by the count
    over all the processes, which gives the gradient of one process's mean over the global batch.
    """
    if not isinstance(out, (tuple, list)):
        return out, (ddp.all_reduce_mean(out.detach().float()) if distributed else out)
    total, count = out
    count = torch.as_tensor(count, device=total.device).double()
    if not distributed:
        loss = total / count.clamp(min=1).to(total.dtype)
        return loss, loss
    world = ddp.world_size()
    count = ddp.all_reduce_mean(count) * world
    summed = ddp.all_reduce_mean(total.detach().double()) * world
    scale = (world / count.clamp(min=1)).to(total.dtype)
    return total * scale, (summed / count.clamp(min=1)).float()
