"""torchrun / torch.distributed set-up.

balgrad does not wrap the model in ``DistributedDataParallel``: strategies compute
several separate gradients with ``torch.autograd.grad`` (which DDP's reducer does not
see), so each strategy all-reduces its gradients and batch statistics itself through
:class:`balgrad._grad.DistributedGradientSync`, before any coefficient or projection
(SPEC section 3). The sync is looked up at every ``backward()``, so a strategy made
before ``init_process_group`` still reduces. Parameters are broadcast from rank 0 once
at start and buffers (BatchNorm statistics) after every step; every rank applies the
same update, so replicas stay identical. (``joint``, ``mslr`` and ``balgrad_fast`` also
run on a DDP-wrapped model in a user's own loop.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """This process's place in a torchrun launch: ``rank``, ``world_size`` and ``local_rank``
    (0, 1, 0 for a single process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (it writes the run folder's files)."""
        return self.rank == 0


#: whether init_distributed created the process group (so end_distributed may destroy it)
_OWN_GROUP = [False]


def init_distributed(device: str) -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1).

    Args:
        device: The ``--device`` value (NCCL for CUDA, else Gloo).

    Returns:
        The process's :class:`DistInfo`.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        _OWN_GROUP[0] = True
    return DistInfo(rank, world, local)


def end_distributed() -> None:
    """Destroy the process group :func:`init_distributed` created, after every rank is done.
    Left to interpreter teardown, gloo's threads can abort the process ("terminate called
    without an active exception") after all the work succeeded, so torchrun reports a
    failure. A group the caller created is theirs to end."""
    if _OWN_GROUP[0] and dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    _OWN_GROUP[0] = False


def available_devices() -> list[str]:
    """The ``--device`` values this machine can run: auto, cpu, cuda and cuda:N, mps.

    Returns:
        The device names.
    """
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(device: str) -> None:
    """Fail before any work when ``device`` is not a device of this machine (a typo, CUDA
    on a CPU-only build or machine, an index beyond the GPUs present, MPS off a Mac).

    Args:
        device: A ``--device`` value.

    Raises:
        ConfigError: The device is not available here.
    """
    from balgrad.errors import ConfigError

    if device == "auto":
        return
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    ok = parsed is not None and parsed.type in ("cpu", "cuda", "mps")
    if ok and parsed.type == "cuda":
        ok = torch.cuda.is_available() and (parsed.index or 0) < torch.cuda.device_count()
    elif ok and parsed.type == "mps":
        ok = torch.backends.mps.is_available() and parsed.index in (None, 0)
    if not ok:
        why = ""
        if parsed is not None and parsed.type == "cuda" and not torch.cuda.is_available():
            why = (
                " (this PyTorch build has no CUDA)"
                if torch.version.cuda is None
                else " (no CUDA GPU is visible)"
            )
        raise ConfigError(
            f"--device {device!r} is not available on this machine{why}; "
            f"available: {', '.join(available_devices())}"
        )


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """The torch device for a ``--device`` value: ``auto`` picks CUDA where there is one, and
    under torchrun each process takes its local rank's GPU.

    Args:
        device: A ``--device`` value.
        info: The process's :class:`DistInfo`.

    Returns:
        The device.

    Raises:
        ConfigError: The device is not available here.
    """
    check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and info.enabled:
        device = f"cuda:{info.local_rank}"
        check_device(device)  # a torchrun with more processes per node than GPUs
    return torch.device(device)


@torch.no_grad()
def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (a no-op without a process group).

    Args:
        module: The model.
    """
    if dist.is_available() and dist.is_initialized():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def barrier() -> None:
    """Wait for every process (a no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
