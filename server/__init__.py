"""ganspace_server: the OSC bridge between Pure Data (or any OSC client) and ganspace."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ganspacesynth")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
