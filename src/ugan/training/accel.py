"""Device and precision policy of the training loop (params section `perf:`).

One `Accel` is built from `PerfParams` and the device, and the loop asks it for four things:
- `backends()`: process-wide kernel flags for the run (deterministic mode, cudnn.benchmark,
  TF32), restored afterwards;
- `prepare(method, batches)`: nets in channels_last, optimizers rebuilt fused, nets compiled
  in place (their class and state_dict keys unchanged, so checkpoints stay the same);
- `autocast()`: the bf16 autocast context a training step runs in (bf16 needs no loss scaler);
- `defer_sync`: whether per-step losses stay on the device until the log / checkpoint cadence
  (`LossBuffer`), so a CUDA step never waits for the GPU to report a number.

Every option defaults to exact fp32 behaviour (no TF32 either) except fused Adam (same maths,
one kernel). What changes a run's numbers beyond rounding (the device, `precision`,
`deterministic`) is part of its resume identity (`numeric_identity`).

Correctness before speed:
- a step updates weights in place between forwards (n_critic > 1, RFGAN's second G update,
  GAAN's three phases), so autocast runs without its weight cache, which would keep casting the
  weights of the step's start;
- torch.compile has no double backward: a net a gradient penalty differentiates twice (the
  method's `twice_differentiated`) stays eager;
- deterministic mode raises on a kernel without a deterministic implementation, and on CUDA
  needs CUBLAS_WORKSPACE_CONFIG before cuBLAS starts (`claim_deterministic_cublas`).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass

import torch
from torch import nn

from ugan.config.schema import PerfParams
from ugan.core.errors import ConfigError, DeviceError

# precision name → autocast dtype (None: no autocast)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "tf32": None, "bf16": torch.bfloat16}
# precision name → TF32 for fp32 matmuls and convolutions on CUDA (None: torch's setting)
TF32: dict[str, bool | None] = {"fp32": False, "tf32": True, "bf16": None}
# loss_sync name → defer on this device type?
LOSS_SYNC: dict[str, Callable[[str], bool]] = {
    "step": lambda device_type: False,
    "log": lambda device_type: True,
    "auto": lambda device_type: device_type != "cpu",
}
CUBLAS_DETERMINISTIC = ":4096:8"  # cuBLAS workspace setting deterministic mode requires
CUBLAS_DETERMINISTIC_VALUES = (":4096:8", ":16:8")  # the two settings torch accepts
# The numbers of a run beyond rounding: a resume must not change them (`numeric_identity`).
# channels_last, compile, fused_optim and loss_sync change speed and float rounding only.
NUMERIC_PERF = ("precision", "deterministic")


def claim_deterministic_cublas(
    environ: MutableMapping[str, str] | None = None, cuda_started: bool | None = None
) -> None:
    """Deterministic cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before cuBLAS starts (it reads it
    once). Set it while CUDA has not started in this process; keep a deterministic value the
    user set; refuse once CUDA has started without one (cuBLAS may already run with another
    workspace). `environ` / `cuda_started` default to this process's."""
    environ = os.environ if environ is None else environ
    if environ.get("CUBLAS_WORKSPACE_CONFIG") in CUBLAS_DETERMINISTIC_VALUES:
        return
    started = torch.cuda.is_initialized() if cuda_started is None else cuda_started
    if started:
        raise ConfigError(
            "perf.deterministic: CUDA started in this process before CUBLAS_WORKSPACE_CONFIG "
            "was set, so cuBLAS may run with a non-deterministic workspace; start the process "
            f"with CUBLAS_WORKSPACE_CONFIG={CUBLAS_DETERMINISTIC} in its environment"
        )
    environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_DETERMINISTIC


def numeric_identity(perf: PerfParams | None, device: torch.device | str) -> dict[str, object]:
    """What a resume must not change of the speed policy: the device type (other kernels, other
    random streams) and the perf keys that change a run's numbers beyond rounding
    (`NUMERIC_PERF`). Flat keys, so a refused resume names each difference."""
    perf = perf or PerfParams()
    identity = {f"perf.{key}": getattr(perf, key) for key in NUMERIC_PERF}
    return {"device": torch.device(device).type, **identity}


def claim_process(perf: PerfParams | None, device: torch.device | str) -> None:
    """What `perf` needs of the process before any CUDA work (a stage calls it before moving
    nets to the device): the cuBLAS workspace of deterministic mode."""
    if perf is not None and perf.deterministic and torch.device(device).type == "cuda":
        claim_deterministic_cublas()


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
    rebuilt.register_load_state_dict_post_hook(_keep_fused)
    rebuilt.load_state_dict(optimizer.state_dict())
    return rebuilt


def _keep_fused(optimizer: torch.optim.Optimizer) -> None:
    """A state dict's param groups carry the kernel flags of the optimizer that saved it, and
    `step` reads them from the groups: loading the replaced optimizer's state (or a resume state
    saved unfused) would quietly switch the fused kernels back off."""
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = True, None


@dataclass(frozen=True)
class Accel:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    fused_optim: bool = True
    compile: bool = False
    deterministic: bool = False
    loss_sync: str = "auto"
    compile_backend: str = "inductor"  # torch.compile's; not a params key (tests: aot_eager)

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
        if self.deterministic and self.device.type == "cuda":
            claim_deterministic_cublas()

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
        """The context one training step runs in: bf16 autocast, or nothing for fp32. Without
        the weight cache: a step updates weights in place between forwards, and a cached cast
        would keep the weights of the step's start."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=False)

    @contextlib.contextmanager
    def backends(self) -> Iterator[None]:
        """Kernel selection for the run. Deterministic: deterministic algorithms (an op without
        one raises), cudnn.benchmark off; else cudnn autotuning for the fixed shapes of a
        training run. TF32 for fp32 matmuls / convolutions off for exact fp32, on for `tf32`.
        The previous settings come back on exit."""
        cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
        saved = (
            cudnn.benchmark,
            cudnn.deterministic,
            cudnn.allow_tf32,
            matmul.allow_tf32,
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        if self.deterministic and self.device.type == "cuda":
            claim_deterministic_cublas()
        cudnn.benchmark = not self.deterministic
        cudnn.deterministic = self.deterministic
        tf32 = TF32[self.precision]
        if tf32 is not None:
            cudnn.allow_tf32 = matmul.allow_tf32 = tf32
        torch.use_deterministic_algorithms(self.deterministic, warn_only=False)
        try:
            yield
        finally:
            cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
            cudnn.allow_tf32, matmul.allow_tf32 = saved[2], saved[3]
            torch.use_deterministic_algorithms(saved[4], warn_only=saved[5])

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
            eager = getattr(method, "twice_differentiated", {})
            for name, module in modules_of(method).items():
                if name in eager:
                    warnings.warn(
                        f"perf.compile: {name} left uncompiled: {eager[name]} differentiates "
                        "it twice, and torch.compile has no double backward",
                        stacklevel=2,
                    )
                    continue
                # in place: same class, same state_dict keys
                module.compile(backend=self.compile_backend)
        return method


class LossBuffer:
    """Per-step losses held on the device; `flush` brings all pending steps to the host in one
    copy. Values may be 0-d tensors or host numbers (a learning rate), which stay on the host:
    making them device tensors would cost a copy that waits for the GPU each step."""

    def __init__(self) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, losses: Mapping[str, float | torch.Tensor]) -> None:
        tensors = {k: v for k, v in losses.items() if torch.is_tensor(v)}
        self._steps.append(step)
        self._names.append(tuple(losses))
        self._host.append({k: float(v) for k, v in losses.items() if k not in tensors})
        self._rows.append(
            torch.stack([v.detach().reshape(()).float() for v in tensors.values()])
            if tensors
            else None
        )

    def flush(self) -> list[tuple[int, dict[str, float]]]:
        """[(step, {name: value})] of every pending step, oldest first; empties the buffer."""
        rows = [row for row in self._rows if row is not None]
        if len({row.device for row in rows}) == 1 and len({len(row) for row in rows}) == 1:
            synced = iter(torch.stack(rows).cpu().tolist())  # the one device → host sync
        else:
            synced = iter([row.cpu().tolist() for row in rows])
        flushed = []
        for step, names, host, row in zip(
            self._steps, self._names, self._host, self._rows, strict=True
        ):
            on_device = [name for name in names if name not in host]
            read = next(synced) if row is not None else []
            values = {**host, **dict(zip(on_device, read, strict=True))}
            flushed.append((step, {name: values[name] for name in names}))
        self.clear()
        return flushed

    def clear(self) -> None:
        self._steps: list[int] = []
        self._names: list[tuple[str, ...]] = []
        self._host: list[dict[str, float]] = []
        self._rows: list[torch.Tensor | None] = []
