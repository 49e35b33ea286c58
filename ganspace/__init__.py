"""ganspace: GANSynth in PyTorch (TF-free Magenta checkpoints), GANSpace directions, hallucination
and training. The OSC server lives in the separate package ``ganspace_server``."""

from ganspace.engine.latent import slerp
from ganspace.engine.model import GANSynthModel, default_pitch
from ganspace.errors import CheckpointError, GanspaceError, InputError, ModelFormatError
from ganspace.formats import load_model
from ganspace.space.directions import Directions, load_directions, save_directions

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "Directions",
    "GANSynthModel",
    "GanspaceError",
    "InputError",
    "ModelFormatError",
    "default_pitch",
    "load_directions",
    "load_model",
    "save_directions",
    "slerp",
]
