"""Errors the library raises for bad input. The CLI and the server print their message as is."""


class GanspaceError(Exception):
    """Base class: the message names what was wrong, in words a user can act on."""


class CheckpointError(GanspaceError):
    """A Magenta checkpoint folder or TF bundle is missing, truncated, corrupt or incomplete."""


class ModelFormatError(GanspaceError):
    """A native model or directions file is unreadable, of an unknown version, or inconsistent."""


class InputError(GanspaceError, ValueError):
    """An argument is out of range or malformed (unknown pitch, z of the wrong width, NaN, ...)."""


class Cancelled(GanspaceError):
    """A long job was cancelled by its caller."""
