"""Packaging and sharing generators: the Generator class, the safetensors + config.json
package, model cards, and the Hugging Face Hub."""

from .export import export_run
from .generator import Generator
from .inference import InferenceOptions
from .loading import load_generator, push_to_hub
from .package import load_package, save_package

__all__ = ["Generator", "InferenceOptions", "load_generator", "push_to_hub", "export_run", "save_package",
           "load_package"]
