"""Where things live. Every path a stage reads or writes outside its params is named here, so
dvc.yaml, the stages and the library agree on one spelling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PARAMS_FILE = Path("params.yaml")
PREPARED = Path("data/prepared/dataset.npz")
DAE_PATH = Path("models/dae.pt")  # RFGAN's denoising autoencoder, the same file for every run
RESUME_ROOT = Path(".ugan/resume")  # outside DVC's outputs, which DVC clears before a rerun
SPOOL_ROOT = Path(".ugan/spool")  # tracking data kept while the store is unreachable


@dataclass(frozen=True)
class RunLayout:
    """Where a run's files live: runs/<key>/…"""

    root: Path

    @property
    def losses_csv(self) -> Path:
        return self.root / "losses.csv"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def summary(self) -> Path:
        return self.root / "train.json"

    def sample_path(self, step: int) -> Path:
        return self.samples / f"step_{step:06d}.png"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"generator_step_{step:06d}.pt"

    def ema_checkpoint_path(self, step: int) -> Path:
        """The generator's weight average at `step` (`gan.ema`), in the same file format."""
        return self.checkpoints / f"generator_ema_step_{step:06d}.pt"

    def discard_after(self, step: int) -> None:
        """Remove checkpoints and grids newer than `step` (all of them for a fresh start):
        the folders persist across DVC reruns so that a resumed run keeps its earlier ones."""
        for folder in (self.checkpoints, self.samples):
            for path in folder.glob("*_[0-9]*.*"):
                if int(path.stem.rsplit("_", 1)[1]) > step:
                    path.unlink()

    def checkpoint_steps(self, ema: bool = False) -> list[int]:
        """The steps of the generator checkpoints (`ema`: of the average's, if any)."""
        pattern = "generator_ema_step_*.pt" if ema else "generator_step_*.pt"
        return sorted(int(p.stem.rsplit("_", 1)[1]) for p in self.checkpoints.glob(pattern))
