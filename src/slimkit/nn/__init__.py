"""Neural-network models: the zoo registry and the built-in architectures."""

from slimkit.nn.zoo import ModelInfo, create, list_models, model_info, register

__all__ = ["ModelInfo", "create", "list_models", "model_info", "register"]
