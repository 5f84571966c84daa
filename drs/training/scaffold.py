"""What every trainer does once its dataset is built: seed, network, optimizer, loader, record, fit, save."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from drs.config.settings import LoopSettings
from drs.runtime.device import seed_everything
from drs.store.model_files import save_model
from drs.training.loop import fit
from drs.training.schedules import step_schedule

log = logging.getLogger("drs.train")


def data_loader(data, settings) -> DataLoader:
    """The training DataLoader over ``data`` with ``settings``' batch_size and num_workers: shuffled
    by its own generator (which :func:`fit` reseeds every epoch), the last partial batch dropped
    when there is more than one batch. ``num_workers`` None: the job's threads on CUDA, none on the
    CPU (one stream there, as the outputs pinned by the tests). Pinned memory on CUDA. Workers
    are never persistent: each epoch's workers take their seeds from the generator fit has just
    reseeded, and see that epoch's ``epoch_seed`` (drs.runtime.distributed.SeededSamples)."""
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
