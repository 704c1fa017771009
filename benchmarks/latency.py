"""Inference latency: PyTorch eager vs torch.compile vs ONNX Runtime float32 vs ONNX Runtime int8 (static).

Three models a deployment would choose between: the course's small_resnet (1x28x28, 10 classes),
MobileNetV3-small and EfficientNet-Lite0 (3x224x224, 1000 classes; Lite0 with its ImageNet weights).
Each is exported with cvlab.deploy.export_onnx (preprocessing inside the graph) and quantized to int8
with calibration on real images (Fashion-MNIST training images for small_resnet, the photos that ship
with scikit-image and scikit-learn for the ImageNet models). Every runtime takes the same uint8 batch;
batch 1 and 32, one thread and all cores; median and p95 over at least a second of calls after
five warm-up calls (cvlab.deploy.compare). Figures are speed-ups measured side by side in this run.

    .venv/bin/python benchmarks/latency.py [--min-time 1.0] [--no-compile]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch

import cvlab
from cvlab import data, deploy, models
from cvlab.preprocess import Preprocess


def calibration_images(name: str) -> torch.Tensor:
    if name == "small_resnet":
        train = data.load("fashion_mnist", "train")
        return train.images[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:300]]
    photos = [data.sample_image(n) for n in data.SAMPLE_IMAGES]
    return data.as_batch(photos, size=224, channels=3)


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "small_resnet":
        model = models.create(name, num_classes=10, in_chans=1)
        model.preprocess = Preprocess(mean=(0.286,), std=(0.353,), size=(28, 28), channels=1)
    else:
        model = models.create(name, pretrained=name == "efficientnet_lite0")
        cfg = models.data_config(model) if name == "efficientnet_lite0" else {"mean": (0.485, 0.456, 0.406),
                                                                               "std": (0.229, 0.224, 0.225)}
        model.preprocess = Preprocess(mean=cfg["mean"], std=cfg["std"], size=(224, 224), channels=3)
    return model.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed calls per measurement (default 1)")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles for minutes)")
    args = p.parse_args()
    bf16 = torch.cpu._is_avx512_bf16_supported()
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    vnni = "avx512_vnni" in flags or "avx_vnni" in flags
    print(f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, {os.cpu_count()} CPUs "
          f"({platform.processor() or platform.machine()}), AVX512-BF16 {'yes' if bf16 else 'no'}, "
          f"VNNI (int8 dot products) {'yes' if vnni else 'no'}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("small_resnet", "mobilenet_v3_small", "efficientnet_lite0"):
            model = build(name)
            calibration = calibration_images(name)
            exported = deploy.export_onnx(model, Path(tmp) / f"{name}.onnx")
            int8 = deploy.quantize(exported.path, Path(tmp) / f"{name}.int8.onnx", calibration=calibration)
            print(f"\n== {name}: {exported}; int8 {deploy.file_size(int8) / 1e6:.2f} MB "
                  f"(calibrated on {len(calibration)} images)")
            images = calibration[torch.arange(32) % len(calibration)]
            rows = deploy.compare(model, images, {"onnx float32": exported.path, "onnx int8": int8},
                                  compile=not args.no_compile, min_time=args.min_time)
            print(f"{'runtime':<15} {'batch':>5} {'threads':>7} {'first ms':>9} {'median ms':>10} {'p95 ms':>8} "
                  f"{'images/s':>9}")
            for r in rows:
                print(f"{r['runtime']:<15} {r['batch']:>5} {r['threads']:>7} {r['first_ms']:>9.1f} "
                      f"{r['median_ms']:>10.2f} {r['p95_ms']:>8.2f} {r['images_per_s']:>9.0f}")
            results[name] = {(r["runtime"], r["batch"], r["threads"]): r for r in rows}

    all_threads = os.cpu_count()
    print()
    for name, rows in results.items():
        for b in (1, 32):
            eager = rows[("pytorch eager", b, all_threads)]["median_ms"]
            if ("torch.compile", b, all_threads) in rows:  # no target: compiling pays for some models, not others
                print(f"torch.compile speed-up over eager, {name}, batch {b}: "
                      f"{eager / rows[('torch.compile', b, all_threads)]['median_ms']:.2f} x")
            fp32 = rows[("onnx float32", b, all_threads)]["median_ms"]
            print(f"RESULT onnx_float32_speedup_{name}_b{b} {eager / fp32:.2f} x (target >= 1)")
            int8 = rows[("onnx int8", b, all_threads)]["median_ms"]
            print(f"RESULT int8_speedup_{name}_b{b} {eager / int8:.2f} x (target >= 1)")
    lite = results["efficientnet_lite0"]
    print(f"RESULT efficientnet_lite0_int8_b1_median {lite[('onnx int8', 1, all_threads)]['median_ms']:.2f} ms "
          f"(target <= 20)")
    print(f"RESULT efficientnet_lite0_eager_b1_median {lite[('pytorch eager', 1, all_threads)]['median_ms']:.2f} ms "
          f"(target <= 100)")
    headline = lite[("pytorch eager", 1, all_threads)]["median_ms"] / lite[("onnx int8", 1, all_threads)]["median_ms"]
    print(f"RESULT int8_onnx_speedup_efficientnet_lite0_b1 {headline:.2f} x (target >= 2)")


if __name__ == "__main__":
    cvlab.seed_everything(0)
    main()
