"""The server's command handlers, one module per topic of the protocol table.

Importing this package imports every topic module, which registers its handlers
(:mod:`ganspace_server.handlers.registry`), then checks that each command of the table has one.
"""

from ganspace_server.handlers import (  # noqa: F401 (imported to register their handlers)
    bank,
    coefficients,
    hallu,
    latents,
    model,
    preset,
    session,
    synthesis,
)
from ganspace_server.handlers.registry import check_complete

check_complete()
