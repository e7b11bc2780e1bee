"""The built-in classifiers by name, and the rules their settings follow.

Light on purpose (no TensorFlow): training configs and the Train form check names against these
before a model is built, and `models` builds from them.
"""

from __future__ import annotations

BACKBONES = ("resnet50", "efficientnet_b0", "convnext_tiny", "mobilenet_v2")  # Keras applications (`backbones`)
ARCHITECTURES = ("small_cnn", "madry_cnn", "preact_resnet20", "preact_resnet44", "woods_resnet44", "densenet_bc",
                 *BACKBONES)
ACTIVATIONS = ("relu", "half_huber")  # half_huber: seed 004's smooth ReLU (woods_resnet44 only)
DENSENET_DEPTH, DENSENET_GROWTH = 100, 12  # densenet_bc's defaults: DenseNet-BC-100 (k = 12), as in seed 001


def densenet_depth_problem(depth: int) -> str | None:
    """Why a DenseNet-BC cannot have this depth (3 blocks of 2 layers each, plus 4), if it cannot."""
    if depth < 10 or (depth - 4) % 6:
        return f"DenseNet-BC depth must be 6n+4 with n >= 1 (10, 40, 100, ...), got {depth}"
    return None
