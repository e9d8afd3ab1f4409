"""Device and precision policy of the training loop (params section `perf:`).

One `Accel` is built from `PerfParams` and the device, and the loop asks it for four things:
- `backends()`: process-wide kernel flags for the run (deterministic mode, cudnn.benchmark),
  restored afterwards;
- `prepare(method, batches)`: nets in channels_last, optimizers rebuilt fused, nets compiled
  in place (their class and state_dict keys unchanged, so checkpoints stay the same);
- `autocast()`: the bf16 autocast context a training step runs in (bf16 needs no loss scaler);
- `defer_sync`: whether per-step losses stay on the device until the log / checkpoint cadence
  (`LossBuffer`), so a CUDA step never waits for the GPU to report a number.

Every option defaults to exact fp32 behaviour except fused Adam (same maths, one kernel).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ugan.config.schema import PerfParams
from ugan.core.errors import ConfigError, DeviceError

# precision name → autocast dtype (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
# loss_sync name → defer on this device type?
LOSS_SYNC: dict[str, Callable[[str], bool]] = {
    "step": lambda device_type: False,
    "log": lambda device_type: True,
    "auto": lambda device_type: device_type != "cpu",
}
CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS workspace setting deterministic mode requires


def _members(obj: object, kind: type) -> dict[str, object]:
    """The attributes of a method object that are `kind` (nets, optimizers), by name."""
    return {name: value for name, value in vars(obj).items() if isinstance(value, kind)}


def modules_of(method: object) -> dict[str, nn.Module]:
    return _members(method, nn.Module)


def optimizers_of(method: object) -> dict[str, torch.optim.Optimizer]:
    return _members(method, torch.optim.Optimizer)


def fused(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The same optimizer (class, groups, hyper-parameters, state) with fused kernels, or the
    optimizer itself when its class or its parameters' device has none."""
    cls = type(optimizer)
    accepted = inspect.signature(cls.__init__).parameters
    if "fused" not in accepted or optimizer.defaults.get("fused"):
        return optimizer
    options = {k: v for k, v in optimizer.defaults.items() if k in accepted}
    options |= {"fused": True, "foreach": None}
    groups = [
        {k: v for k, v in group.items() if k not in ("fused", "foreach")}
        for group in optimizer.param_groups
    ]
    try:
        rebuilt = cls(groups, **options)
    except (RuntimeError, ValueError):  # no fused kernel for this device / dtype
        return optimizer
    rebuilt.load_state_dict(optimizer.state_dict())
    return rebuilt


@dataclass(frozen=True)
class Accel:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    fused_optim: bool = True
    compile: bool = False
    deterministic: bool = False
    loss_sync: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", torch.device(self.device))
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"perf.precision: got {self.precision!r}, allowed values are {sorted(PRECISIONS)}"
            )
        if self.loss_sync not in LOSS_SYNC:
            raise ConfigError(
                f"perf.loss_sync: got {self.loss_sync!r}, allowed values are {sorted(LOSS_SYNC)}"
            )
        if (
            self.precision == "bf16"
            and self.device.type == "cuda"
            and not torch.cuda.is_bf16_supported()
        ):
            raise DeviceError("perf.precision: bf16 is not supported by this GPU; use fp32")

    @classmethod
    def from_params(cls, perf: PerfParams | None, device: torch.device | str) -> Accel:
        return cls(device=torch.device(device), **(perf or PerfParams()).model_dump())

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    @property
    def defer_sync(self) -> bool:
        return LOSS_SYNC[self.loss_sync](self.device.type)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context one training step runs in: bf16 autocast, or nothing for fp32."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @contextlib.contextmanager
    def backends(self) -> Iterator[None]:
        """Kernel selection for the run. Deterministic: deterministic algorithms (a warning
        names any op without one), cudnn.benchmark off; else cudnn autotuning for the fixed
        shapes of a training run. The previous settings come back on exit."""
        cudnn = torch.backends.cudnn
        saved = (
            cudnn.benchmark,
            cudnn.deterministic,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
        cudnn.benchmark = not self.deterministic
        cudnn.deterministic = self.deterministic
        torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
        try:
            yield
        finally:
            cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
            torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])

    def prepare(self, method, batches=None):
        """Apply the policy to a built method (already on the device) and its batch stream."""
        if self.channels_last:
            for module in modules_of(method).values():
                module.to(memory_format=torch.channels_last)
            if batches is not None:
                batches.memory_format = torch.channels_last
        if self.fused_optim:
            for name, optimizer in optimizers_of(method).items():
                setattr(method, name, fused(optimizer))
        if self.compile:
            for module in modules_of(method).values():
                module.compile()  # in place: same class, same state_dict keys
        return method


def _scalar(value: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    if torch.is_tensor(value):
        return value.detach().reshape(()).float()
    return torch.tensor(float(value), device=device)


class LossBuffer:
    """Per-step losses held on the device; `flush` brings all pending steps to the host in one
    copy. Values may be floats (methods that already synced) or 0-d tensors."""

    def __init__(self) -> None:
        self._steps: list[int] = []
        self._names: list[tuple[str, ...]] = []
        self._rows: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, losses: Mapping[str, float | torch.Tensor]) -> None:
        device = next(
            (v.device for v in losses.values() if torch.is_tensor(v)), torch.device("cpu")
        )
        self._steps.append(step)
        self._names.append(tuple(losses))
        self._rows.append(torch.stack([_scalar(v, device) for v in losses.values()]))

    def flush(self) -> list[tuple[int, dict[str, float]]]:
        """[(step, {name: value})] of every pending step, oldest first; empties the buffer."""
        if not self._steps:
            return []
        if len({row.device for row in self._rows}) == 1 and len({len(n) for n in self._names}) == 1:
            values = torch.stack(self._rows).cpu().tolist()  # the one device → host sync
        else:
            values = [row.cpu().tolist() for row in self._rows]
        flushed = [
            (step, dict(zip(names, row, strict=True)))
            for step, names, row in zip(self._steps, self._names, values, strict=True)
        ]
        self.clear()
        return flushed

    def clear(self) -> None:
        self._steps, self._names, self._rows = [], [], []
