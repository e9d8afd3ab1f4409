import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ugan.config.load import load_params, parse_params
from ugan.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_project_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert {r.init for r in params.runs.values()} == {"random", "vae"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"gan": {"stepz": 3}}, r"gan\.stepz: unknown key; allowed keys are \[.*'steps'"),
        ({"gan": {"steps": 0}}, r"gan\.steps: Input should be greater than 0"),
        ({"gan": {"steps": "many"}}, r"gan\.steps: .*valid integer"),
        (
            {"gan": {"loss": "vanilla"}},
            r"gan\.loss: got 'vanilla', allowed values are 'ns', 'lsgan', 'wgan', 'wgan-gp'",
        ),
        ({"data": {"image_size": 48}}, r"data\.image_size: got 48, allowed values are 28, 32"),
        ({"runs": {"x": {"init": "vae", "lr": 1}}}, r"runs\.x\.lr: unknown key; allowed keys are"),
        ({"runs": {"x": {}}}, r"runs\.x\.init: Field required"),
        ({"runs": {"x": {"init": "pretrained"}}}, r"runs\.x\.init: got 'pretrained'"),
        ({"device": "tpu"}, r"device: got 'tpu', allowed values are 'auto', 'cpu' or 'cuda'"),
        (
            {"gan": {"steps": 10, "checkpoint_every": 20}},
            r"checkpoint_every \(20\) must be ≤ steps",
        ),
        ({"sweep": {}}, r"sweep: unknown key; allowed keys are \['classifier', .*'data'"),
    ],
)
def test_bad_params_name_the_key_and_what_is_allowed(raw, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_params(raw)


def test_run_overrides_gan_defaults():
    params = parse_params(
        {
            "gan": {"steps": 50, "checkpoint_every": 10},
            "runs": {"w": {"init": "vae", "loss": "wgan", "n_critic": 5}},
        }
    )
    run = params.run("w")
    assert (run.gan.loss, run.gan.n_critic, run.gan.steps) == ("wgan", 5, 50)
    with pytest.raises(ConfigError, match="unknown run 'nope'"):
        params.run("nope")


def test_stage_stops_before_any_work_on_bad_params(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["gan"]["loss"] = "vanilla"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "gan.loss: got 'vanilla'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()
