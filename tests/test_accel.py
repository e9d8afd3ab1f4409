"""The speed policy (`perf:` → ugan.training.accel): autocast, channels_last, fused Adam,
deterministic
kernels, and losses kept on the device until the log cadence. CPU tests run everywhere; the
CUDA ones run where a GPU is visible."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ugan.config.load import parse_params
from ugan.config.schema import PerfParams
from ugan.core.device import resolve_device
from ugan.core.errors import ConfigError, NonFiniteLossError
from ugan.core.paths import RunLayout
from ugan.data.batches import InfiniteBatches
from ugan.methods.gan import GANMethod
from ugan.nets.dcgan import Generator, init_weights
from ugan.nets.generator_file import generator_payload, load_generator
from ugan.tracking.stage_run import StageRun
from ugan.training.accel import Accel, LossBuffer
from ugan.training.gan import build_method, train_gan

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _method(tiny_arch, **gan):
    run = parse_params({"gan": {"steps": 4, "checkpoint_every": 2, **gan}}).run("dcgan")
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    return build_method(tiny_arch, run, generator_payload(g), 0.02)


def _train(tmp_path, tiny_arch, tiny_data, name, perf=None, device="cpu", **gan):
    gan = {"steps": 10, "checkpoint_every": 5, "batch_size": 16, "log_every": 5, **gan}
    run = parse_params({"gan": gan}).run("dcgan")
    torch.manual_seed(0)
    g = Generator(tiny_arch)
    init_weights(g)
    with StageRun("train_gan", {}, run_key=name, log_models=False) as tracker:
        summary = train_gan(
            name,
            run,
            tiny_arch,
            tiny_data,
            generator_payload(g),
            tmp_path / name,
            tracker,
            resume_root=tmp_path / "resume",
            device=device,
            perf=PerfParams(**(perf or {})),
        )
    # Metrics are buffered and sent when the run ends.
    history = tracker.client.get_metric_history(tracker.run_id, "g_loss")
    return summary, [(m.step, m.value) for m in history]


def test_perf_params_are_validated_with_the_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"perf.precision: got 'fp16', allowed values are"):
        parse_params({"perf": {"precision": "fp16"}})
    with pytest.raises(ConfigError, match=r"perf.turbo: unknown key; allowed keys are \["):
        parse_params({"perf": {"turbo": True}})
    assert parse_params({}).perf == PerfParams()


def test_loss_sync_is_per_step_on_cpu_and_deferred_on_cuda_by_default():
    assert not Accel(torch.device("cpu")).defer_sync
    assert Accel(torch.device("cpu"), loss_sync="log").defer_sync
    assert Accel(torch.device("cuda")).defer_sync  # a device object needs no GPU
    with pytest.raises(ValueError, match="perf.loss_sync: got 'sometimes'"):
        Accel(torch.device("cpu"), loss_sync="sometimes")


def test_bf16_autocast_runs_the_nets_in_bfloat16_on_cpu(tiny_arch):
    g = Generator(tiny_arch)
    z = torch.randn(4, tiny_arch.latent_dim)
    with Accel(torch.device("cpu"), precision="bf16").autocast():
        assert g.project[0](z).dtype == torch.bfloat16
    with Accel(torch.device("cpu")).autocast():
        assert g.project[0](z).dtype == torch.float32


def test_prepare_sets_channels_last_and_rebuilds_adam_fused(tiny_arch):
    arch = dataclasses.replace(tiny_arch, channels=3)  # one channel is NCHW and NHWC at once
    method = _method(arch)
    images = torch.randint(0, 256, (32, 3, 28, 28), dtype=torch.uint8).numpy()
    batches = InfiniteBatches(images, torch.zeros(32, dtype=torch.long).numpy(), 16, seed=0)
    opt_d = method.opt_d
    Accel(torch.device("cpu"), channels_last=True, fused_optim=True).prepare(method, batches)
    convs = [m for m in method.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
    real, _ = batches.next()
    assert real.is_contiguous(memory_format=torch.channels_last) and not real.is_contiguous()
    assert method.opt_d is not opt_d and method.opt_d.defaults["fused"] is True
    assert method.opt_d.param_groups[0]["params"] == opt_d.param_groups[0]["params"]
    assert method.opt_d.defaults["lr"] == opt_d.defaults["lr"]
    losses = method.train_step(batches.next)
    assert all(torch.isfinite(v) for v in losses.values())


def test_fused_adam_takes_the_same_step_as_the_default_one(tiny_arch, tiny_data):
    images, labels = tiny_data.train
    states = []
    for fused_optim in (False, True):
        method = _method(tiny_arch)
        batches = InfiniteBatches(images, labels, 16, seed=0)
        Accel(torch.device("cpu"), fused_optim=fused_optim).prepare(method, batches)
        torch.manual_seed(1)
        method.train_step(batches.next)
        states.append(method.generator.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-5, atol=1e-6)


def _adam_kernels(method, batches) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        method.train_step(batches.next)
    return {e.name for e in prof.events() if "adam" in e.name.lower()}


def test_fused_adam_runs_its_kernel_even_after_loading_a_state_saved_unfused(tiny_arch, tiny_data):
    # A state dict's param groups carry the saving optimizer's `fused: None`, and `step` reads
    # the flag from the groups: loading one (the replaced optimizer's, an older resume state)
    # switched the fused kernel off while `defaults` still said fused.
    images, labels = tiny_data.train
    method = _method(tiny_arch)
    batches = InfiniteBatches(images, labels, 16, seed=0)
    unfused_state = method.opt_d.state_dict()
    assert "aten::_fused_adam_" not in _adam_kernels(method, batches)
    Accel(torch.device("cpu"), fused_optim=True).prepare(method, batches)
    assert "aten::_fused_adam_" in _adam_kernels(method, batches)
    method.opt_d.load_state_dict(unfused_state)  # a resume state saved before the fix
    assert all(group["fused"] for group in method.opt_d.param_groups)
    assert "aten::_fused_adam_" in _adam_kernels(method, batches)


def test_compile_compiles_each_net_in_place(tiny_arch):
    method = _method(tiny_arch)
    generator = method.generator
    Accel(torch.device("cpu"), compile=True, fused_optim=False).prepare(method)
    assert method.generator is generator and type(generator) is Generator
    assert all(m._compiled_call_impl is not None for m in (generator, method.discriminator))
    assert "project.0.weight" in generator.state_dict()  # checkpoints keep their keys


def test_deterministic_mode_turns_cudnn_benchmark_off_and_restores_the_flags():
    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with Accel(torch.device("cpu"), deterministic=True).backends():
        assert cudnn.benchmark is False and cudnn.deterministic is True
        assert torch.are_deterministic_algorithms_enabled()
    with Accel(torch.device("cpu")).backends():
        assert cudnn.benchmark is True and not torch.are_deterministic_algorithms_enabled()
    assert (cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before


def test_loss_buffer_flushes_tensors_and_floats_in_step_order():
    buffer = LossBuffer()
    buffer.add(1, {"d_loss": torch.tensor(0.5), "g_loss": 2.0})
    buffer.add(2, {"d_loss": torch.tensor(float("nan")), "g_loss": torch.tensor([3.0])})
    flushed = buffer.flush()
    assert [step for step, _ in flushed] == [1, 2]
    assert flushed[0][1] == {"d_loss": 0.5, "g_loss": 2.0}
    assert flushed[1][1]["g_loss"] == 3.0 and flushed[1][1]["d_loss"] != flushed[1][1]["d_loss"]
    assert len(buffer) == 0 and buffer.flush() == []


def test_deferred_losses_log_exactly_what_per_step_sync_logs(tmp_path, tiny_arch, tiny_data):
    step_summary, step_history = _train(tmp_path, tiny_arch, tiny_data, "step")
    log_summary, log_history = _train(
        tmp_path, tiny_arch, tiny_data, "log", perf={"loss_sync": "log"}
    )
    assert step_history == log_history and [s for s, _ in log_history] == [5, 10]
    csv = [(tmp_path / n / "losses.csv").read_text() for n in ("step", "log")]
    assert csv[0] == csv[1] and len(csv[0].splitlines()) == 11
    assert step_summary["g_loss_final"] == log_summary["g_loss_final"]


def test_deferred_guard_fires_at_the_cadence_and_never_checkpoints_past_a_nan(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    real_step = GANMethod.train_step
    calls = {"n": 0}

    def step(self, next_batch):
        calls["n"] += 1
        losses = real_step(self, next_batch)
        return {**losses, "d_loss": losses["d_loss"] * float("nan")} if calls["n"] == 7 else losses

    monkeypatch.setattr(GANMethod, "train_step", step)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 7: \{'d_loss': nan\}"):
        _train(tmp_path, tiny_arch, tiny_data, "nan", perf={"loss_sync": "log"})
    assert calls["n"] == 10, "the loop runs on to the log cadence (step 10), then stops"
    assert RunLayout(tmp_path / "nan").checkpoint_steps() == [5]


def test_bf16_channels_last_training_writes_plain_fp32_checkpoints(tmp_path, tiny_arch, tiny_data):
    perf = {"precision": "bf16", "channels_last": True, "loss_sync": "log"}
    summary, history = _train(tmp_path, tiny_arch, tiny_data, "fast", perf=perf)
    assert summary["checkpoints"] == [5, 10] and len(history) == 2
    generator = load_generator(RunLayout(tmp_path / "fast").checkpoint_path(10))
    assert generator.project[0].weight.dtype == torch.float32
    assert generator(torch.randn(3, tiny_arch.latent_dim)).shape == (3, 1, 28, 28)


# -- on a GPU ----------------------------------------------------------------------------


@cuda
def test_device_auto_picks_the_gpu():
    assert resolve_device("auto").type == "cuda"


@cuda
def test_cuda_fast_path_trains_and_deterministic_mode_repeats_bitwise(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    # Deterministic cuBLAS needs its workspace setting before cuBLAS starts (here: the fast run
    # below); a stage sets it itself before any CUDA work (accel.claim_process).
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    fast = {"precision": "bf16", "channels_last": True}
    summary, history = _train(tmp_path, tiny_arch, tiny_data, "fast", perf=fast, device="cuda")
    assert summary["checkpoints"] == [5, 10] and len(history) == 2
    exact = {"deterministic": True}
    weights = []
    for name in ("a", "b"):
        _train(tmp_path, tiny_arch, tiny_data, name, perf=exact, device="cuda")
        weights.append(load_generator(RunLayout(tmp_path / name).checkpoint_path(10)).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@cuda
@pytest.mark.parametrize("gan", [{"method": "began"}, {"loss": "wgan-gp"}])
def test_cuda_deterministic_mode_has_a_kernel_for_every_op_and_repeats_bitwise(
    tmp_path, tiny_arch, tiny_data, monkeypatch, gan
):
    """Deterministic mode raises on an op without a deterministic kernel: BEGAN (nearest
    upsampling) and a gradient penalty (double backward) must not need one."""
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    raw = {"gan": {"steps": 4, "checkpoint_every": 4, "batch_size": 16, **gan}}
    run = parse_params({**raw, "runs": {"d": {"init": "random"}}}).run("d")
    recipe = {"arch": tiny_arch.to_dict(), "net": "dcgan", "prior": "normal", "source": "random"}
    weights = []
    for name in ("a", "b"):
        with StageRun("train_gan", {}, run_key=name, log_models=False) as tracker:
            train_gan(
                name, run, tiny_arch, tiny_data, recipe, tmp_path / name, tracker,
                resume_root=tmp_path / "resume", device="cuda",
                perf=PerfParams(deterministic=True),
            )  # fmt: skip
        weights.append(load_generator(RunLayout(tmp_path / name).checkpoint_path(4)).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_generator_step_skips_d_weight_gradients_and_restores_d_flags(tiny_arch, tiny_data):
    method = _method(tiny_arch)
    frozen = method.discriminator.head.bias
    frozen.requires_grad_(False)  # a method may keep part of D frozen: it must stay so
    at_d_step = {}
    method.opt_d.register_step_pre_hook(
        lambda opt, args, kwargs: at_d_step.update(
            {
                n: p.grad.clone()
                for n, p in method.discriminator.named_parameters()
                if p.grad is not None
            }
        )
    )
    images, labels = tiny_data.train
    method.train_step(InfiniteBatches(images, labels, 16, seed=0).next)
    assert not frozen.requires_grad
    assert all(p.requires_grad for p in method.discriminator.parameters() if p is not frozen)
    # The G step's backward added nothing to D's gradients: they are still the D step's.
    after = {n: p.grad for n, p in method.discriminator.named_parameters() if p.grad is not None}
    assert after.keys() == at_d_step.keys() and len(after) > 0
    assert all(torch.equal(after[n], at_d_step[n]) for n in after)
