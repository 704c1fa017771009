"""cvlab: the package behind the computer-vision course.

    import cvlab
    train = cvlab.data.load("fashion_mnist", "train")
    print(cvlab.eda.summary(train))
    model = cvlab.load("runs/demo/best.pt")   # a checkpoint rebuilds its model, preprocessing and class names
"""
from . import augment, callbacks, checkpoint, config, data, eda, image, models, plot, recipes, schedules, train, widgets
from . import distill  # lesson 06: distillation losses and the frozen teacher
from . import transfer  # lesson 07: freezing, heads, per-block learning rates, features
from . import cache, checks  # lesson 08: the debugging checklist, the decode-once image cache
from . import ensemble, explain, imbalance, metrics  # lesson 09: metrics, imbalance, ensembles, explanations
from . import fewshot, ssl, tasks, zeroshot  # lesson 10: self-supervised, few-shot and zero-shot learning
from . import app, deploy  # lesson 11: ONNX export, int8, latency, a model card, a Gradio app
from . import preprocess
from .checkpoint import load
from .config import QUICK, device, seed_everything

__version__ = "0.1.0"
__all__ = ["config", "data", "eda", "image", "augment", "widgets", "plot", "models", "train", "callbacks", "checkpoint",
           "schedules", "recipes", "distill", "transfer", "checks", "cache", "metrics", "imbalance", "ensemble",
           "explain", "tasks", "ssl", "fewshot", "zeroshot", "deploy", "app", "preprocess", "load", "QUICK", "device", "seed_everything", "__version__"]
