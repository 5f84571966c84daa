"""One training loop for every trainer (classifier, refiner, segmenter).

What it gives each of them: the device chosen automatically (CUDA, with automatic mixed precision,
when present; else the CPU), fixed seeds, a checkpoint after every epoch (``last.pt``, written
atomically) and resumption from it after an interruption, and a log line every N steps with loss,
images/s and ETA (a progress bar when stderr is a terminal).

Determinism: the data order and augmentation of epoch e depend only on (seed, e), so a run resumed
from its epoch checkpoint ends where an uninterrupted run ends (on the CPU, bit for bit).

Several processes: launched by ``torchrun --nproc_per_node=N`` (see :mod:`drs.distributed`), the same
call trains with DistributedDataParallel: each process takes 1/N of every global batch (a
DistributedSampler reseeded every epoch), batch norm is synchronised across processes
(``sync_batchnorm``), gradients are averaged, and only rank 0 logs and writes checkpoints. Each
image's augmentation is then drawn from its own seed (seed, epoch, image) instead of one stream per
epoch, so the result does not depend on N: one process with ``nproc_invariant=True`` and N processes
with the same global batch give the same model, up to floating-point rounding.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from drs.errors import UserError
from drs.progress import StepProgress

log = logging.getLogger("drs.train")

MODEL_FILE = "model.pt"  # the trained model in a training rule's output folder (last.pt: the epoch checkpoint)

LAST_CHECKPOINT = "last.pt"


def pick_device(prefer: str = "auto") -> torch.device:
    """CUDA when present (the device SLURM or CUDA_VISIBLE_DEVICES exposes), else the CPU."""
    if prefer == "cpu" or not torch.cuda.is_available():
        if prefer not in ("auto", "cpu"):
            log.warning("device %r requested but CUDA is not available: running on the CPU", prefer)
        return torch.device("cpu")
    return torch.device("cuda" if prefer == "auto" else prefer)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}; CUDA_VISIBLE_DEVICES={visible})"
    return f"cpu ({torch.get_num_threads()} threads; no CUDA device found)"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_save(obj, path: Path) -> None:
    """torch.save to a hidden temporary file, then rename: a reader never sees a partial file.

    A failed write (a full disk) removes the temporary file, keeps what ``path`` held and raises
    one UserError naming ``path`` (fileio.atomic_file). Under torchrun only rank 0 writes (every
    process holds the same model and state)."""
    from drs.fileio import RecordingWriter, atomic_file, write_error

    if not _is_main():
        return
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as file:
        writer = RecordingWriter(file)  # torch turns a failed write into "enforce fail": keep the OSError
        try:
            torch.save(obj, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise write_error(path, writer.error) from None


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_model(model: nn.Module, record: dict, out_dir: Path) -> Path:
    """``OUT/model.pt``: the state dict and ``record`` (kind, model config, settings), written atomically
    by rank 0 while every process waits for it. Returns its path."""
    from drs.distributed import barrier

    final = Path(out_dir) / MODEL_FILE
    atomic_save({"state_dict": model.state_dict(), **record}, final)
    barrier()
    log.info("wrote %s", final)
    return final


def read_model_file(path: str | Path, kinds: tuple[str, ...]) -> dict:
    """The checkpoint dict of a ``model.pt`` that ``drs train-<kind>`` wrote, for one of ``kinds``
    (UserError naming the file when it is missing, unreadable or of another kind)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = load_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"{path}: not a readable checkpoint ({err})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") not in kinds:
        raise UserError(f"{path}: not a checkpoint of drs train-{' or train-'.join(kinds)}")
    return checkpoint


def load_model(path: str | Path, kinds: tuple[str, ...], model_class) -> tuple[nn.Module, dict]:
    """(model in eval mode on the CPU, the checkpoint's record without its state dict) from a
    ``model.pt`` of one of ``kinds``; ``model_class.from_config`` rebuilds the network."""
    checkpoint = read_model_file(path, kinds)
    for key, kind in (("model_config", dict), ("state_dict", dict), ("class_names", list)):
        if not isinstance(checkpoint.get(key), kind):
            raise UserError(
                f"{path}: checkpoint has no {key!r} ({'a mapping' if kind is dict else 'a list'}); "
                f"not a model.pt of drs train-{checkpoint['kind']}"
            )
    try:
        model = model_class.from_config(checkpoint["model_config"])
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise UserError(f"{path}: model config {checkpoint['model_config']} does not build a network ({err})") from None
    _check_state_dict(path, model, checkpoint["state_dict"])
    model.load_state_dict(checkpoint.pop("state_dict"))
    model.eval()
    return model, checkpoint


class StateDictMismatch(UserError):
    """A model file's state dict does not fit the network its record describes."""


def _check_state_dict(path, model: nn.Module, state: dict) -> None:
    """UserError naming the checkpoint and its first key that the network lacks, misses or holds in
    another shape (e.g. a checkpoint of another width or number of classes)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise StateDictMismatch(
            f"{path}: state dict is missing {len(missing)} key(s) of the network, first {missing[0]!r}"
        )
    if unexpected:
        raise StateDictMismatch(f"{path}: state dict has {len(unexpected)} unexpected key(s), first {unexpected[0]!r}")
    for key, value in expected.items():
        shape = tuple(getattr(state[key], "shape", ()))
        if not isinstance(state[key], torch.Tensor) or shape != tuple(value.shape):
            raise StateDictMismatch(
                f"{path}: state dict key {key!r} has shape {shape} but the network of its model config needs "
                f"{tuple(value.shape)} (a checkpoint of another width or number of classes?)"
            )


_EPOCH_KEYS = ("model", "optimizer", "scaler", "epoch")


def read_epoch_checkpoint(path: Path, name: str = "train") -> dict | None:
    """The epoch checkpoint ``path`` (``last.pt``), or None when there is none. One that cannot be
    read (empty, truncated, not an epoch checkpoint) is moved aside to ``<name>.unreadable`` (by
    rank 0) and logged, so that the run starts afresh instead of failing at every rerun."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
        if not isinstance(state, dict) or not all(k in state for k in _EPOCH_KEYS):
            raise ValueError(f"not an epoch checkpoint of drs (no {', '.join(_EPOCH_KEYS)})")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        aside = path.with_name(path.name + ".unreadable")
        if _is_main():
            try:
                os.replace(path, aside)
            except FileNotFoundError:
                pass
        log.warning("%s: %s is unreadable (%s); moved it to %s and starting afresh", name, path, err, aside)
        return None
    return state


def _first_difference(saved, wanted, where: str) -> str | None:
    """The first key path at which two nested values differ, with both values."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        keys = list(wanted) + [k for k in saved if k not in wanted]
        for key in sorted(keys, key=lambda k: not _is_data_key(k)):  # data first: the likelier cause
            if key not in saved or key not in wanted:
                side = "last.pt" if key not in wanted else "this run"
                return f"{where}.{key} only in {side}"
            found = _first_difference(saved[key], wanted[key], f"{where}.{key}")
            if found:
                return found
        return None
    if saved != wanted:
        return f"{where} was {_short(saved)} in last.pt, is {_short(wanted)} now"
    return None


def _is_data_key(key) -> bool:
    """Record keys that fingerprint the training data (images, labels, a map store's bytes)."""
    return "fingerprint" in str(key) or "sha256" in str(key)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def resume_mismatch(state: dict, extra_state: dict) -> str | None:
    """Why the checkpoint ``state`` cannot be resumed by a run with ``extra_state`` (None: it can):
    the training data changed (the ``data_fingerprint`` of a record differs), or another setting."""
    for key, wanted in extra_state.items():
        found = _first_difference(state.get(key), wanted, key)
        if found:
            path = found.split(" ")[0].split(".")
            if not any(map(_is_data_key, path)):
                what = "other settings"
            elif " only in " in found:
                what = "cannot tell whether the training data is the same"
            else:
                what = "the training data changed"
            return f"{what} ({found})"
    return None


@dataclass
class LoopSettings:
    epochs: int
    seed: int = 0
    log_every: int = 20
    amp: bool = True  # only takes effect on CUDA
    max_steps: int | None = None  # stop after this many steps in all (the last epoch cut short)


def _is_main() -> bool:
    """Rank 0 under torchrun, or the only process (drs.distributed is loaded by fit and extraction)."""
    module = sys.modules.get("drs.distributed")
    return module is None or module.is_main()


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
    from drs import distributed as ddp

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
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
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
            use_amp=use_amp,
        )
    finally:
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
    use_amp,
) -> None:
    """fit's epochs from ``start_epoch`` on (``forward``: the DistributedDataParallel module or None)."""
    from drs import distributed as ddp

    world, rank = ddp.world_size(), ddp.rank()
    steps = len(loader)
    progress = StepProgress(
        log, name, steps * max(0, settings.epochs - start_epoch), settings.log_every, sys.stderr.isatty() and _is_main()
    )
    total_steps = 0
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
        running = 0.0
        for step, batch in enumerate(loader, 1):
            run_step = epoch * steps + step - 1  # 0-based, over the whole run
            if settings.max_steps is not None and run_step >= settings.max_steps:
                break
            if lr_at_step is not None:
                for group in optimizer.param_groups:
                    group["lr"] = group["initial_lr"] * factor * lr_at_step(run_step)
            with torch.autocast(device.type, enabled=use_amp):
                out = step_loss(model, batch, device) if forward is None else forward(batch)
            # every process sees the global batch's mean loss: all log it, and stop on it together
            loss, reported = _batch_loss(out, distributed=forward is not None)
            if not torch.isfinite(reported):
                raise FloatingPointError(f"{name}: loss is {reported.item()} at epoch {epoch + 1} step {step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            running = reported.item() if step == 1 else 0.9 * running + 0.1 * reported.item()
            images = len(batch[0]) * world if isinstance(batch, (list, tuple)) else 0
            progress.step(epoch + 1, settings.epochs, step, steps, running, optimizer.param_groups[0]["lr"], images)
            total_steps += 1
            if after_step is not None:
                after_step(run_step + 1)
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
        log.info("%s: epoch %d/%d done, loss %.4f, checkpoint %s", name, epoch + 1, settings.epochs, running, last)


def _batch_loss(out, distributed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to backpropagate, the global batch's mean loss) from what step_loss returned: a
    mean over the batch, or a pair (sum, count) for a mean over a number of elements that varies
    between batches (e.g. the pixels not ignored by a segmentation loss). Under
    DistributedDataParallel, which averages the processes' gradients, a per-process mean is right
    when every process averages over as many elements; a (sum, count) pair is divided by the count
    over all the processes, which gives the gradient of one process's mean over the global batch.
    """
    from drs import distributed as ddp

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


def step_decay(milestones: list[int], gamma: float = 0.1) -> Callable[[int], float]:
    """Learning-rate multiplier: times gamma from each milestone epoch on (1-based: milestones
    [5, 10] train epochs 1-4 at the base rate, 5-9 at 0.1x, 10- at 0.01x, as the reference code)."""

    def factor(epoch: int) -> float:
        return gamma ** sum(epoch + 1 >= m for m in milestones)

    return factor


def poly_decay(total_epochs: int, power: float = 0.9) -> Callable[[int], float]:
    def factor(epoch: int) -> float:
        return math.pow(1 - epoch / max(1, total_epochs), power)

    return factor


# -- the trainers' scaffold ------------------------------------------------------------------------
def data_loader(data, settings) -> DataLoader:
    """The training DataLoader over ``data`` with ``settings``' batch_size and num_workers: shuffled
    by its own generator (which :func:`fit` reseeds every epoch), the last partial batch dropped
    when there is more than one batch. ``num_workers`` None: the job's threads on CUDA, none on the
    CPU (one stream there, as the outputs pinned by the tests). Pinned memory on CUDA. Workers
    are never persistent: each epoch's workers take their seeds from the generator fit has just
    reseeded, and see that epoch's ``epoch_seed`` (drs.distributed.SeededSamples)."""
    cuda = torch.cuda.is_available()
    workers = settings.num_workers
    if workers is None:
        workers = torch.get_num_threads() if cuda else 0
    return DataLoader(
        data,
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=len(data) > settings.batch_size,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=False,
        generator=torch.Generator(),
    )


def step_schedule(settings, steps_per_epoch: int) -> tuple[LoopSettings, dict]:
    """The VGG trainers' schedule: ``settings.epochs`` epochs, lr x0.1 from each of
    ``settings.lr_decay_epochs`` on."""
    return settings.loop, {"lr_at_epoch": step_decay(settings.lr_decay_epochs)}


def train(
    kind: str,
    name: str,
    settings,
    out_dir: str | Path,
    data,
    model: Callable[[], nn.Module],
    optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    step_loss: Callable[[nn.Module, object, torch.device], torch.Tensor],
    record: dict,
    *,
    schedule: Callable[[object, int], tuple[LoopSettings, dict]] = step_schedule,
    after_step: Callable[[nn.Module, dict], Callable[[int], None] | None] | None = None,
    stop_after_steps: int | None = None,
    nproc_invariant: bool | None = None,
) -> Path:
    """What every ``drs train-<kind>`` does once its dataset ``data`` is built: seed
    (``settings.seed``), build the network (``model()``, its initialisation drawn after the seed)
    and its ``optimizer(net)``, the loader (:func:`data_loader`), the record (kind, model config,
    settings, then ``record``'s keys), :func:`fit` with ``step_loss`` and ``schedule(settings,
    steps per epoch)`` (the loop settings and fit's learning-rate options), then ``OUT/model.pt``.
    ``after_step(net, record)`` gives fit's ``after_step``. Returns the model file's path."""
    seed_everything(settings.seed)
    net = model()
    opt = optimizer(net)
    loader = data_loader(data, settings)
    loop, rates = schedule(settings, len(loader))
    record = {"kind": kind, "model_config": net.config, "settings": asdict(settings), **record}
    log.info("%s: %d images, %d epochs (%d steps each)", name, len(data), loop.epochs, len(loader))
    fit(
        net,
        opt,
        loader,
        step_loss,
        loop,
        out_dir,
        after_step=after_step(net, record) if after_step else None,
        name=name,
        extra_state={"record": record},
        stop_after_steps=stop_after_steps,
        nproc_invariant=nproc_invariant,
        **rates,
    )
    return save_model(net, record, Path(out_dir))
