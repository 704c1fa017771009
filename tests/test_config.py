import random
from pathlib import Path

import numpy as np
import pytest
import torch

from cvlab import config


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True), ("", False), ("0", False), ("no", False)])
def test_quick_mode_reads_env(monkeypatch, value, expected):
    monkeypatch.setenv("CVLAB_QUICK", value)
    assert config.is_quick() is expected


def test_quick_mode_rejects_unknown_value(monkeypatch):
    monkeypatch.setenv("CVLAB_QUICK", "maybe")
    with pytest.raises(ValueError, match="CVLAB_QUICK='maybe'"):
        config.is_quick()


def test_seed_everything_replays_python_numpy_and_torch():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    config.seed_everything(123)
    a = draw()
    config.seed_everything(123)
    b = draw()
    config.seed_everything(124)
    c = draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert a[0] != c[0] and not torch.equal(a[2], c[2])


def test_device_prefers_accelerators_then_cpu(monkeypatch):
    monkeypatch.delenv("CVLAB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert config.device().type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device().type == "cuda"


def test_device_override_and_missing_accelerator(monkeypatch):
    assert config.device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        config.device("cuda")
    monkeypatch.setenv("CVLAB_DEVICE", "cuda:0")
    with pytest.raises(RuntimeError, match="CVLAB_DEVICE"):
        config.device()


def test_data_root_env_then_checkout_then_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CVLAB_DATA", str(tmp_path / "mydata"))
    assert config.data_root() == tmp_path / "mydata" and (tmp_path / "mydata").is_dir()
    monkeypatch.delenv("CVLAB_DATA")
    assert config.REPO_ROOT is not None, "tests run from a checkout"
    assert config.data_root() == config.REPO_ROOT / "datasets"
    monkeypatch.setattr(config, "REPO_ROOT", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert config.data_root() == Path(tmp_path / "cache" / "cvlab")
