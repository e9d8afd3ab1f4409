"""The trainer's own faults, in process: a non-finite loss stops or rolls back and retries;
a resume with other settings is refused naming the differences; a truncated or mismatched
newest state falls back to the previous one. See the reliability table in the README."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from method_helpers import train_tiny_gan

from ugan.core.checkpoint_io import load_checkpoint, save_checkpoint
from ugan.core.errors import NonFiniteLossError, ResumeMismatchError
from ugan.core.paths import RunLayout
from ugan.nets.dcgan import Discriminator, Generator

STATES = "resume/train_gan/dcgan/state_*.pt"


class InfAt:
    """The `wrap` hook of train_gan: the real method, but at the start of the given calls of
    its step one of D's weights is set to +inf, so the real step computes non-finite losses.
    Records, per call, the method's state before it, the batch drawn and the losses."""

    def __init__(self, calls: set[int]) -> None:
        self.at, self.method, self.calls = calls, None, 0
        self.before: list[dict] = []
        self.batches: list[torch.Tensor] = []
        self.losses: list[dict[str, float]] = []

    def __call__(self, method, batches) -> InfAt:
        self.method = method
        return self

    def __getattr__(self, name: str):
        return getattr(self.__dict__["method"], name)

    def train_step(self, next_batch):
        self.calls += 1
        self.before.append(copy.deepcopy(self.method.state_dict()))
        if self.calls in self.at:
            with torch.no_grad():
                next(self.method.discriminator.parameters()).fill_(float("inf"))

        def drawn():
            batch = next_batch()
            self.batches.append(batch[0].clone())
            return batch

        losses = self.method.train_step(drawn)
        self.losses.append({k: float(v) for k, v in losses.items()})
        return losses


def _tensors(state) -> dict[str, torch.Tensor]:
    """The tensors of a nested state, by their path."""
    if torch.is_tensor(state):
        return {"": state}
    if not isinstance(state, dict | list | tuple):
        return {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    return {f"{k}.{p}": t for k, v in items for p, t in _tensors(v).items()}


def _equal(a, b) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_nonfinite_loss_stops_naming_step_and_checkpoints_nothing_after(
    tmp_path, tiny_arch, tiny_data
):
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 7: \{'d_loss': nan"):
        train_tiny_gan(tmp_path, tiny_arch, tiny_data, wrap=InfAt({7}))
    assert RunLayout(tmp_path / "out").checkpoint_steps() == [5]
    assert [p.name for p in tmp_path.glob(STATES)] == ["state_00000005.pt"]


def test_nonfinite_loss_rolls_back_and_retries(tmp_path, tiny_arch, tiny_data):
    """A real +inf weight at step 7: the rollback restores the state saved at step 5 (weights
    and optimizers, so the inf is gone) and the replay draws the same batches with fresh noise."""
    inf = InfAt({7})
    saved = {}

    def peek(method, batches):  # the state file at step 5, read while it exists (call 8)
        wrapped = inf(method, batches)
        real = wrapped.train_step

        def step(next_batch):
            if inf.calls == 7:  # call 8 comes next: the replay of step 6
                saved.update(load_checkpoint(tmp_path / STATES.replace("*", "00000005")))
            return real(next_batch)

        wrapped.__dict__["train_step"] = step
        return wrapped

    with pytest.warns(UserWarning, match="non-finite loss at step 7.*rolled back to step 5"):
        summary = train_tiny_gan(
            tmp_path, tiny_arch, tiny_data, {"nonfinite_retries": 1}, wrap=peek
        )
    assert summary["checkpoints"] == [5, 10, 15, 20]
    assert inf.calls == 22  # 6 good + 1 non-finite, replayed from step 5: 15 more
    assert not all(map(math.isfinite, inf.losses[6].values()))  # call 7: the real inf
    # Call 8 starts from exactly the saved state; call 7 had started from a later one.
    assert _equal(inf.before[7], saved["method"])
    assert _equal(inf.before[7], inf.before[5])
    assert not _equal(inf.before[6], saved["method"])
    # The replay of step 6 (call 8) draws the failed attempt's batch with other noise.
    assert torch.equal(inf.batches[7], inf.batches[5])
    assert inf.losses[7] != inf.losses[5]
    assert all(math.isfinite(v) for losses in inf.losses[7:] for v in losses.values())


def test_resume_with_changed_loss_is_refused_with_the_differences(
    tmp_path, tiny_arch, tiny_data, monkeypatch
):
    with pytest.raises(NonFiniteLossError):  # leaves a resume state at step 10
        train_tiny_gan(tmp_path, tiny_arch, tiny_data, wrap=InfAt({12}))
    with pytest.raises(
        ResumeMismatchError, match=r"loss: saved 'ns' → now 'lsgan'[\s\S]*UGAN_FRESH_START=1"
    ):
        train_tiny_gan(tmp_path, tiny_arch, tiny_data, {"loss": "lsgan"})
    monkeypatch.setenv("UGAN_FRESH_START", "1")
    assert train_tiny_gan(tmp_path, tiny_arch, tiny_data, {"loss": "lsgan"})["checkpoints"] == [
        5,
        10,
        15,
        20,
    ]


# What a resumed run may not change besides the loss: the argument of `train_tiny_gan` it changes,
# and the line of the refusal that names it.
CHANGES = {
    "architecture": (
        lambda arch: {"tiny_arch": dataclasses.replace(arch, base_channels=arch.base_channels * 2)},
        r"arch: saved \{[^}]*'base_channels': 4",
    ),
    "optimizer": (
        lambda arch: {"overrides": {"optim": {"lr": 1e-3}}},
        r"optim: saved .*'lr': 0\.0002",
    ),
    "data": (
        lambda arch: {"fingerprint": {"data": "digest-b", "init_file": "digest-a"}},
        r"data: saved 'digest-a' → now 'digest-b'",
    ),
    "init": (
        lambda arch: {"fingerprint": {"data": "digest-a", "init_file": "digest-b"}},
        r"init_file: saved 'digest-a' → now 'digest-b'",
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_resume_with_another_architecture_optimizer_data_or_init_is_refused(
    tmp_path, tiny_arch, tiny_data, change
):
    digests = {"data": "digest-a", "init_file": "digest-a"}  # what gan_run fingerprints
    with pytest.raises(NonFiniteLossError):  # leaves a resume state at step 10
        train_tiny_gan(tmp_path, tiny_arch, tiny_data, wrap=InfAt({12}), fingerprint=digests)
    changed, named = CHANGES[change]
    arguments = {"tiny_arch": tiny_arch, "overrides": None, "fingerprint": digests}
    arguments |= changed(tiny_arch)
    with pytest.raises(ResumeMismatchError, match=named):
        train_tiny_gan(tmp_path, tiny_data=tiny_data, **arguments)


def _states_at_10_and_15(tmp_path, tiny_arch, tiny_data) -> Path:
    with pytest.raises(NonFiniteLossError):  # states at 10 and 15 remain
        train_tiny_gan(tmp_path, tiny_arch, tiny_data, wrap=InfAt({17}))
    return tmp_path / "resume/train_gan/dcgan"


def test_truncated_newest_state_falls_back_to_previous_with_warning(tmp_path, tiny_arch, tiny_data):
    newest = _states_at_10_and_15(tmp_path, tiny_arch, tiny_data) / "state_00000015.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(
        UserWarning, match=r"skipping unusable resume state: checkpoint .*state_00000015\.pt"
    ):
        summary = train_tiny_gan(tmp_path, tiny_arch, tiny_data)
    assert summary["checkpoints"] == [5, 10, 15, 20]


def _another_architectures_nets(state_file: Path, arch) -> None:
    """Rewrite a state file with the nets of a wider architecture, its fingerprint unchanged: a
    valid .pt that claims the run's params but cannot be loaded into the run's nets."""
    state = load_checkpoint(state_file)
    wider = dataclasses.replace(arch, base_channels=arch.base_channels * 2)
    state["method"]["generator"] = Generator(wider).state_dict()
    state["method"]["discriminator"] = Discriminator(wider).state_dict()
    save_checkpoint(state_file, state)


def test_a_state_of_other_shapes_falls_back_to_the_previous_one_with_a_warning(
    tmp_path, tiny_arch, tiny_data
):
    folder = _states_at_10_and_15(tmp_path, tiny_arch, tiny_data)
    _another_architectures_nets(folder / "state_00000015.pt", tiny_arch)
    with pytest.warns(UserWarning) as caught:
        summary = train_tiny_gan(tmp_path, tiny_arch, tiny_data)
    shown = "\n".join(str(w.message) for w in caught)
    assert re.search(
        r"skipping unusable resume state: checkpoint \S*state_00000015\.pt does not fit the "
        r"nets its params describe \('method\.generator\.project\.0\.weight': file \(784, 8\) "
        r"vs net \(392, 8\);.*moved aside to state_00000015\.pt\.unusable",
        shown,
    ), shown
    assert "starting over" not in shown
    assert summary["checkpoints"] == [5, 10, 15, 20]
    assert list(folder.glob("state_*")) == []  # finished: the store is cleared, aside too


def test_when_no_state_fits_the_run_starts_over_naming_the_files(tmp_path, tiny_arch, tiny_data):
    folder = _states_at_10_and_15(tmp_path, tiny_arch, tiny_data)
    for step in (10, 15):
        _another_architectures_nets(folder / f"state_{step:08d}.pt", tiny_arch)
    inf = InfAt(set())
    with pytest.warns(UserWarning) as caught:
        summary = train_tiny_gan(tmp_path, tiny_arch, tiny_data, wrap=inf)
    shown = [str(w.message) for w in caught]
    for step in (15, 10):
        assert any(f"state_{step:08d}.pt does not fit the nets" in message for message in shown), (
            shown
        )
    assert re.search(
        r"no usable resume state for dcgan \(\S*state_00000015\.pt\.unusable, "
        r"\S*state_00000010\.pt\.unusable: see above\); starting over from step 0",
        shown[-1],
    ), shown
    assert inf.calls == 20  # from step 0
    assert summary["checkpoints"] == [5, 10, 15, 20]
