"""Run-time wiring the bundle configs call, so that no setting's meaning lives in a YAML ternary.

Each function is one decision a config used to spell as ``$... if ... else ...``: which device, how many
threads, whether this process is distributed rank 0, whether to train before evaluating, which rank
generates the embedded data; or a value a config would otherwise compute in a Python expression (the number
of a network's parameters).
Every bundle's ``train.yaml``, ``evaluate.yaml``, ``inference.yaml`` and ``multi_gpu_train.yaml`` uses them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "close",
    "default_device",
    "init_distributed",
    "is_main_process",
    "is_rank_zero",
    "leave_distributed",
    "local_rank_device",
    "needs_training",
    "num_parameters",
    "optional_path",
    "set_num_threads",
    "summary_writer",
    "rank_zero_first",
    "train_if",
    "wrap_ddp",
]


def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def local_rank_device() -> torch.device:
    """This distributed process's device: ``cuda:$LOCAL_RANK`` (default 0) when GPUs are visible, else ``cpu``."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
    return torch.device("cpu")


def set_num_threads(num_threads: int) -> None:
    """``torch.set_num_threads(num_threads)`` when it is positive; 0 (or less) keeps torch's default."""
    if int(num_threads) > 0:
        torch.set_num_threads(int(num_threads))


def init_distributed(device: torch.device | str) -> None:
    """Join the default process group (NCCL on a GPU device, gloo on CPU) unless already joined; select the GPU."""
    device = torch.device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)


def leave_distributed() -> None:
    """Leave the default process group, if this process joined one."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def wrap_ddp(module: torch.nn.Module, device: torch.device | str, **kwargs) -> torch.nn.Module:
    """``module`` on ``device`` in ``DistributedDataParallel`` (``device_ids=[device]`` on a GPU, none on CPU)."""
    device = torch.device(device)
    device_ids = [device] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module.to(device), device_ids=device_ids, **kwargs)


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of the process group (``True`` when not distributed)."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def is_main_process() -> bool:
    """Whether the launcher made this process rank 0 (``$RANK``, set by ``torchrun``; 0 when unset): known
    before any process group exists, so a config can switch its rank-0-only handlers off with it."""
    return int(os.environ.get("RANK", "0")) == 0


def summary_writer(log_dir: str | os.PathLike, enabled: bool = True):
    """A TensorBoard ``SummaryWriter`` on ``log_dir`` when ``enabled`` (e.g. on the main process), else ``None``."""
    if not enabled:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def num_parameters(module: torch.nn.Module) -> int:
    """The number of scalars in ``module``'s parameters."""
    return sum(p.numel() for p in module.parameters())


def close(resource: Any) -> None:
    """``resource.close()`` unless it is ``None``."""
    if resource is not None:
        resource.close()


def optional_path(enabled: bool, directory: str | os.PathLike, name: str) -> str | None:
    """``directory/name`` when ``enabled``, else ``None`` (an output a setting switches off)."""
    return os.path.join(str(directory), name) if enabled else None


def needs_training(ckpt_path: str | os.PathLike, resume: bool = True) -> bool:
    """Whether evaluation must train first: no checkpoint yet, or (with ``resume``) an interrupted run's resume file."""
    from common.handlers import resume_path

    return not os.path.exists(ckpt_path) or (bool(resume) and os.path.exists(resume_path(ckpt_path)))


def train_if(train_first: bool, trainer) -> None:
    """Before evaluating: run ``trainer`` when ``train_first`` (the evaluator's ``CheckpointLoader`` then loads
    the checkpoint that training saved)."""
    if train_first:
        trainer.run()


def rank_zero_first(make: Callable[..., Any], *args, **kwargs) -> Any:
    """``make(*args, **kwargs)`` on rank 0 first, then on the other ranks after a barrier (so that data rank 0
    generates and caches are only read by the others); a plain call without a process group."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return make(*args, **kwargs)
    if is_rank_zero():
        result = make(*args, **kwargs)
        torch.distributed.barrier()
        return result
    torch.distributed.barrier()
    return make(*args, **kwargs)
