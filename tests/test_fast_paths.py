"""The `perf:` fast paths compute what the exact path computes (ugan.training.accel): bf16
forwards see the weights of the update before them, compile leaves a net that a gradient penalty
differentiates twice eager, deterministic mode raises on a non-deterministic kernel and exact
fp32 means no TF32, the speed policy is part of a run's resume identity and of the stages' DVC
params, and BEGAN's step leaves its numbers on the device. All on the CPU."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from ugan.config.load import parse_params
from ugan.config.schema import PerfParams, VAEParams
from ugan.core.errors import ConfigError, ResumeMismatchError
from ugan.data.batches import InfiniteBatches
from ugan.methods.began import BEGANMethod
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import Accel, LossBuffer, claim_deterministic_cublas
from ugan.training.gan import build_method, resume_fingerprint, train_gan
from ugan.training.vae import pretrain_vae

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


def _build(arch, method: str = "gan", **gan):
    raw = {"gan": {"steps": 4, "checkpoint_every": 2, "batch_size": 16, **gan}}
    raw["runs"] = {"r": {"init": "random", "method": method}}
    run = parse_params(raw).run("r")
    recipe = {"arch": arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    return build_method(arch, run, recipe, 0.02)


def _tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    if torch.is_tensor(state):
        return {prefix: state}
    if isinstance(state, dict):
        return {
            k: v for key, sub in state.items() for k, v in _tensors(sub, f"{prefix}.{key}").items()
        }
    return {}


# -- 1. bf16: no stale weights ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "gan", "g_updates"),
    [
        ("gan", {"loss": "wgan", "n_critic": 2}, 1),  # critic round 2 after round 1's update
        ("gan", {"loss": "ns"}, 2),  # RFGAN's second generator update (g_updates: 2)
        ("gaan", {}, None),  # GAAN's steps 2 and 3 after step 1's update
    ],
)
def test_bf16_forwards_after_an_update_use_the_updated_weights(
    method, gan, g_updates, tiny_arch, tiny_data
):
    """The loop runs a whole step in `Accel.autocast()`. A forward after an optimizer step in
    that block must cast the *updated* weights: the result equals autocast without its weight
    cache (which casts every weight at every use)."""
    images, labels = tiny_data.train
    states = []
    contexts = (
        lambda: Accel(CPU, precision="bf16").autocast(),
        lambda: torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False),
    )
    for context in contexts:
        m = _build(tiny_arch, method, **gan)
        if g_updates is not None:
            m.g_updates = g_updates
        batches = InfiniteBatches(images, labels, 16, seed=0)
        torch.manual_seed(1)
        with context():
            m.train_step(batches.next)
        states.append(_tensors(m.state_dict()))
    assert states[0].keys() == states[1].keys()
    stale = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    assert not stale, f"bf16 trained on stale weights: {stale[:5]}"


# -- 2. compile + a gradient penalty ------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "gan", "named"),
    [("gan", {"loss": "wgan-gp"}, "wgan-gp"), ("gan", {"loss": "dragan"}, "dragan"),
     ("gaan", {}, "gaan")],
)  # fmt: skip
def test_compile_with_a_gradient_penalty_leaves_the_discriminator_eager_and_trains(
    method, gan, named, tiny_arch, tiny_data
):
    m = _build(tiny_arch, method, **gan)
    accel = Accel(CPU, compile=True, compile_backend="aot_eager", fused_optim=False)
    with pytest.warns(UserWarning, match=rf"perf.compile: discriminator left uncompiled.*{named}"):
        accel.prepare(m)
    assert m.generator._compiled_call_impl is not None
    assert m.discriminator._compiled_call_impl is None
    images, labels = tiny_data.train
    losses = m.train_step(InfiniteBatches(images, labels, 16, seed=0).next)  # was: RuntimeError
    assert all(math.isfinite(float(v)) for v in losses.values())


def test_compile_without_a_penalty_still_compiles_every_net(tiny_arch):
    m = _build(tiny_arch, "gan", loss="hinge")
    Accel(CPU, compile=True, compile_backend="aot_eager", fused_optim=False).prepare(m)
    assert m.generator._compiled_call_impl is not None
    assert m.discriminator._compiled_call_impl is not None


# -- 5. determinism ------------------------------------------------------------------------


def test_deterministic_mode_raises_on_a_nondeterministic_kernel_instead_of_warning():
    x = torch.zeros(4)
    with Accel(CPU, deterministic=True).backends():
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        with pytest.raises(RuntimeError, match="does not have a deterministic implementation"):
            x.put_(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]))  # put_ has none
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize(("precision", "tf32"), [("fp32", False), ("tf32", True), ("bf16", None)])
def test_exact_fp32_turns_tf32_off_for_matmuls_and_convolutions_and_restores_it(precision, tf32):
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    with Accel(CPU, precision=precision).backends():
        inside = [f.allow_tf32 for f in flags]
    assert [f.allow_tf32 for f in flags] == before
    assert inside == (before if tf32 is None else [tf32, tf32])


def test_deterministic_cuda_sets_the_cublas_workspace_before_cuda_starts_or_refuses():
    env: dict[str, str] = {}
    claim_deterministic_cublas(env, cuda_started=False)
    assert env == {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    ready = {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}  # set by the user: kept, even after CUDA started
    claim_deterministic_cublas(ready, cuda_started=True)
    assert ready == {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}
    for late in ({}, {"CUBLAS_WORKSPACE_CONFIG": ":0:0"}):
        with pytest.raises(
            ConfigError, match=r"perf.deterministic.*CUBLAS_WORKSPACE_CONFIG=:4096:8"
        ):
            claim_deterministic_cublas(late, cuda_started=True)


# -- 6. the speed policy in the resume identity and in DVC's params -------------------------


def test_the_resume_fingerprint_holds_the_device_and_the_numerics_of_perf(tiny_arch):
    run = parse_params({}).run("dcgan")
    fast = PerfParams(precision="bf16", channels_last=True, compile=True, loss_sync="log")
    cpu = resume_fingerprint("dcgan", run, tiny_arch, {}, perf=PerfParams(), device=CPU)
    gpu = resume_fingerprint("dcgan", run, tiny_arch, {}, perf=fast, device=torch.device("cuda", 1))
    assert (cpu["device"], cpu["perf.precision"], cpu["perf.deterministic"]) == (
        "cpu",
        "fp32",
        False,
    )
    assert (gpu["device"], gpu["perf.precision"]) == ("cuda", "bf16")  # the type: any rank's GPU
    speed_only = {"channels_last", "compile", "fused_optim", "loss_sync"}
    assert not any(f"perf.{key}" in cpu for key in speed_only)


class _StopAtCall:
    """train_gan's `wrap` hook: the real method, interrupted (as by Ctrl-C) at call `at`."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self, method, batches):
        self.method = method
        return self

    def __getattr__(self, name: str):
        return getattr(self.__dict__["method"], name)

    def train_step(self, next_batch):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.method.train_step(next_batch)


def test_resume_with_another_precision_is_refused_with_the_differences(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    run = parse_params({"gan": {"steps": 4, "checkpoint_every": 2, "batch_size": 16}}).run("dcgan")

    def train(perf: dict, wrap=None) -> dict:
        torch.manual_seed(0)
        g = Generator(tiny_arch)
        init_weights(g)
        with StageRun("train_gan", {}, run_key="dcgan", log_models=False) as tracker:
            return train_gan(
                "dcgan", run, tiny_arch, tiny_data, generator_payload(g), tmp_path / "out",
                tracker, resume_root=tmp_path / "resume", perf=PerfParams(**perf), wrap=wrap,
            )  # fmt: skip

    with pytest.raises(KeyboardInterrupt):  # leaves the fp32 state of step 2
        train({}, wrap=_StopAtCall(3))
    with pytest.raises(
        ResumeMismatchError,
        match=r"perf.precision: saved 'fp32' → now 'bf16'[\s\S]*UGAN_FRESH_START=1",
    ):
        train({"precision": "bf16"})
    assert train({"loss_sync": "log", "fused_optim": False})["checkpoints"] == [2, 4]  # speed only


def test_every_training_stage_reruns_when_the_device_or_the_speed_policy_changes():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("train_gan", "pretrain_vae", "pretrain_dae"):
        stage = stages[name].get("do", stages[name])
        assert {"device", "perf"} <= set(stage["params"]), name
    for name in ("train_classifier", "modes"):  # they train on `device` (no `perf` yet)
        assert "device" in stages[name]["params"], name


# -- 7. no host syncs in BEGAN's step --------------------------------------------------------


@contextmanager
def host_reads() -> Iterator[list[str]]:
    """Every read of a tensor's value by the host (`.item()`, `float()`, `int()`, `bool()`,
    `.tolist()`) made by ugan code, as the name of the calling module."""
    reads: list[str] = []
    patched = {}
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("ugan."):
                reads.append(caller)
            return _real(self, *args, **kwargs)

        patched[name] = real
        setattr(torch.Tensor, name, counting)
    try:
        yield reads
    finally:
        for name, real in patched.items():
            setattr(torch.Tensor, name, real)


@pytest.mark.parametrize(
    ("method", "gan"), [("began", {}), ("gan", {"loss": "wgan-gp", "n_critic": 2}), ("gaan", {})]
)
def test_method_steps_read_nothing_back_to_the_host(method, gan, tiny_arch, tiny_data):
    m = _build(tiny_arch, method, **gan)
    next_batch = InfiniteBatches(*tiny_data.train, 16, seed=0).next
    with host_reads() as reads:
        for _ in range(5):
            losses = m.train_step(next_batch)
    assert reads == [], f"host syncs in {method}'s step: {reads}"
    assert all(torch.is_tensor(v) for k, v in losses.items() if k != "lr")


def _reference_began_control(l_reals, l_fakes, *, gamma, lambda_k, decay, patience, lr, lr_min):
    """BEGAN's k_t and learning-rate schedule on host floats (the method's docstring)."""
    k, m_ema, m_best, since, out = 0.0, math.nan, math.inf, 0, []
    for l_real, l_fake in zip(l_reals, l_fakes, strict=True):
        balance = gamma * l_real - l_fake
        k = min(max(k + lambda_k * balance, 0.0), 1.0)
        m_global = l_real + abs(balance)
        m_ema = m_global if math.isnan(m_ema) else decay * m_ema + (1 - decay) * m_global
        if m_ema < m_best:
            m_best, since = m_ema, 0
        else:
            since += 1
            if since >= patience:
                lr, m_best, since = max(lr / 2, lr_min), m_ema, 0
        out.append((k, m_ema, lr))
    return out


def test_began_control_on_the_device_is_the_paper_control_and_syncs_rarely(tiny_arch, tiny_data):
    """k_t, M_global's average and the halvings equal the host-float reference at every step; the
    schedule reads the device only when a halving may be due (at most twice per patience)."""
    # Nets that barely learn (lr 1e-7) and m̄ = M_global (decay 0): M_global stalls, lr halves.
    knobs = {"gamma": 0.5, "lambda_k": 0.05, "m_global_decay": 0.0, "lr_halve_patience": 2}
    m = _build(tiny_arch, "began", began={**knobs, "lr_min": 1e-9}, optim={"lr": 1e-7})
    next_batch = InfiniteBatches(*tiny_data.train, 16, seed=0).next
    seen = []
    with host_reads() as reads:
        for _ in range(12):
            out = m.train_step(next_batch)
            seen.append((out["l_real"].item(), out["l_fake"].item(), out["k"], out["lr"]))
    expected = _reference_began_control(
        [s[0] for s in seen], [s[1] for s in seen], gamma=0.5, lambda_k=0.05, decay=0.0,
        patience=2, lr=1e-7, lr_min=1e-9,
    )  # fmt: skip
    assert [(float(k), lr) for *_, k, lr in seen] == [(k, lr) for k, _, lr in expected]
    assert m.m_ema == expected[-1][1]
    assert any(lr < 1e-7 for *_, lr in seen), "the test must see a halving"
    assert len(reads) <= 12  # ≤ 1 per step even with patience 2; 0 per step for patience ≫ 1


def test_loss_buffer_keeps_host_numbers_off_the_device():
    """A float loss (BEGAN's lr) must not become a device tensor each step: on CUDA that copy
    waits for the GPU."""
    created = []
    real = torch.tensor

    def spy(*args, **kwargs):
        created.append(kwargs.get("device"))
        return real(*args, **kwargs)

    buffer = LossBuffer()
    d_losses = torch.tensor([0.5, 0.25]).unbind()
    torch.tensor = spy
    try:
        buffer.add(1, {"d_loss": d_losses[0], "lr": 2e-4})
        buffer.add(2, {"d_loss": d_losses[1], "lr": 1e-4})
    finally:
        torch.tensor = real
    assert created == []
    assert buffer.flush() == [(1, {"d_loss": 0.5, "lr": 2e-4}), (2, {"d_loss": 0.25, "lr": 1e-4})]


def test_began_state_holds_host_numbers(tiny_arch, tiny_data):
    m = _build(tiny_arch, "began")
    m.train_step(InfiniteBatches(*tiny_data.train, 16, seed=0).next)
    control = m.state_dict()["control"]
    assert all(type(v) in (float, int) for v in control.values()), control
    assert isinstance(m, BEGANMethod) and isinstance(m.k, float)


def test_pretraining_reads_its_losses_back_once_per_log_step(tiny_arch, tiny_data, tmp_path):
    """The VAE's loop with deferred sync: 20 steps, a log step every 10 → two reads (the
    LossBuffer flushes), none per step; `vae` reads its held-out metrics once at the end."""
    params = VAEParams(steps=20, batch_size=16, sample_every=20, log_every=10)
    with host_reads() as reads, StageRun("pretrain_vae", {}, log_models=False) as tracker:
        pretrain_vae(
            params, tiny_arch, tiny_data, tmp_path / "vae.pt", tmp_path, tracker,
            perf=PerfParams(loss_sync="log"), resume_root=tmp_path / "r", num_samples=4,
        )  # fmt: skip
    assert [r for r in reads if r != "ugan.training.vae"] == ["ugan.training.accel"] * 2
