"""ganspace: GANSynth in PyTorch (TF-free Magenta checkpoints), GANSpace directions, hallucination
and training. The OSC server lives in the separate package ``ganspace_server``."""

from ganspace.errors import CheckpointError, GanspaceError, InputError, ModelFormatError
from ganspace.latent import slerp
from ganspace.model import GANSynthModel, load_model

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "GANSynthModel",
    "GanspaceError",
    "InputError",
    "ModelFormatError",
    "load_model",
    "slerp",
]
