"""Training methods, chosen from a registry by name; each exposes the same step interface."""

from ugan.methods.base import METHODS, Method, get_method
from ugan.methods.gan import GANMethod

__all__ = ["METHODS", "GANMethod", "Method", "get_method"]
