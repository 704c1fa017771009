"""Explanations: what a trained network looks at.

- ``gradcam``: Grad-CAM heat maps for any convolutional layer, overlays, and feature-map grids.
"""
from .gradcam import GradCAM, feature_maps, gradcam, overlay, plot_feature_maps, plot_gradcam  # noqa: F401
