"""Run-wide settings: quick mode, seeding, the compute device and where data lives.

Quick mode (``CVLAB_QUICK=1``) is how CI runs every lesson: the same code on tiny subsets
with few steps. Lessons read ``cvlab.config.QUICK`` and pick their sizes from it, e.g.
``n_train = 2_000 if QUICK else 60_000``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["QUICK", "is_quick", "seed_everything", "device", "fast_kernels", "data_root", "REPO_ROOT"]


def is_quick() -> bool:
    """True when ``CVLAB_QUICK`` is set to a true value ("1", "true", "yes", "on")."""
    value = os.environ.get("CVLAB_QUICK", "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"CVLAB_QUICK={value!r} is not understood; set it to 1 (quick) or 0 (full).")


QUICK: bool = is_quick()

# The checkout this package was imported from, if any (editable install or running in the repo).
_here = Path(__file__).resolve().parent.parent
REPO_ROOT: Path | None = _here if (_here / "pyproject.toml").is_file() and (_here / "datasets").is_dir() else None


def seed_everything(seed: int = 0, *, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        # cuBLAS needs this set before its first use to be reproducible.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU (``prefer`` or ``CVLAB_DEVICE`` overrides)."""
    prefer = prefer or os.environ.get("CVLAB_DEVICE")
    if prefer:
        dev = torch.device(prefer)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for but CUDA is not available; use 'cpu' or unset CVLAB_DEVICE.")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for but MPS is not available; use 'cpu' or unset CVLAB_DEVICE.")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fast_kernels(enable: bool = True) -> None:
    """On NVIDIA GPUs: let cuDNN time its convolution algorithms and pick the fastest for each input shape
    (``cudnn.benchmark``), and let float32 matrix products and convolutions use TF32 tensor cores.

    TF32 keeps float32's range with a 10-bit mantissa: several times faster on Ampere and newer GPUs, and
    indistinguishable for training these networks, but not bit-for-bit reproducible (nor is the benchmark
    choice), which is why it is a setting and off by default in PyTorch. ``recipes.run`` turns it on;
    ``seed_everything(deterministic=True)`` turns the benchmark off again. No effect on CPU and MPS.
    """
    torch.backends.cudnn.benchmark = enable
    torch.backends.cuda.matmul.allow_tf32 = enable
    torch.backends.cudnn.allow_tf32 = enable


def data_root() -> Path:
    """Where datasets are cached: ``$CVLAB_DATA``, else the checkout's ``datasets/``, else a user cache folder."""
    if os.environ.get("CVLAB_DATA"):
        root = Path(os.environ["CVLAB_DATA"]).expanduser()
    elif REPO_ROOT is not None:
        root = REPO_ROOT / "datasets"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cvlab"
    root.mkdir(parents=True, exist_ok=True)
    return root
