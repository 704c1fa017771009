"""cvlab: the package behind the computer-vision course.

    import cvlab
    train = cvlab.data.load("fashion_mnist", "train")
    print(cvlab.eda.summary(train))
"""
from . import config, data, eda, plot
from .config import QUICK, device, seed_everything

__version__ = "0.1.0"
__all__ = ["config", "data", "eda", "plot", "QUICK", "device", "seed_everything", "__version__"]
