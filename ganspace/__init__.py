"""ganspace: GANSynth in PyTorch (TF-free Magenta checkpoints), GANSpace directions, hallucination
and training. The OSC server lives in the separate package ``ganspace_server``."""

from ganspace.engine.latent import slerp
from ganspace.engine.model import GANSynthModel, load_model
from ganspace.errors import CheckpointError, GanspaceError, InputError, ModelFormatError
from ganspace.space.directions import Directions, load_directions, save_directions

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Directions",
    "GANSynthModel",
    "GanspaceError",
    "InputError",
    "ModelFormatError",
    "load_directions",
    "load_model",
    "save_directions",
    "slerp",
]
