"""Explanations: what a trained network looks at.

- ``gradcam``: Grad-CAM heat maps for any convolutional layer, overlays, and feature-map grids.
- ``attention``: a ViT's attention maps per head and block, and attention rollout, as tensors and overlays.
"""
from .gradcam import GradCAM, feature_maps, gradcam, overlay, plot_feature_maps, plot_gradcam  # noqa: F401
from .attention import attention_maps, attention_rollout, head_maps, plot_attention, rollout, upsample  # noqa: F401
