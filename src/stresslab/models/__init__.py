"""Models: the registry of classifiers and the user's own model.

Importing this package registers every built-in model in :data:`MODELS`.
"""

from stresslab.models import configurable_cnn, custom_cnn, fast_cnn, resnet, small_cnn, vgg
from stresslab.models.base import Classifier, Normalize, default_cam_layer, get_layer
from stresslab.models.external import load_user_model
from stresslab.models.factory import (
    MODELS,
    ModelFactory,
    build_model,
    check_model_name,
    model_args,
    model_summary,
    register_model,
)

__all__ = [
    "MODELS",
    "Classifier",
    "ModelFactory",
    "Normalize",
    "build_model",
    "check_model_name",
    "configurable_cnn",
    "custom_cnn",
    "default_cam_layer",
    "fast_cnn",
    "get_layer",
    "load_user_model",
    "model_args",
    "model_summary",
    "register_model",
    "resnet",
    "small_cnn",
    "vgg",
]
