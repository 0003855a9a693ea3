"""What the app's log says a flask_allow message comes from: ``flask_allow``, never an internal module.

Flask's default handler writes ``WARNING in %(module)s``: a warning from the DNS refresher or the
request throttle would read ``WARNING in refresher``, naming a file no user knows. The filter on
the app logger renames the source of records made inside this package (the message itself
names the rule).
"""

from __future__ import annotations

import logging
import os

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
SOURCE = "flask_allow"


class PackageSource(logging.Filter):
    """Give records logged from flask_allow's own modules the module name ``flask_allow``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.pathname.startswith(_PACKAGE):
            record.module = SOURCE
            record.filename = SOURCE
        return True


def attach(logger: logging.Logger) -> None:
    """Add the filter to ``logger`` once."""
    if not any(isinstance(f, PackageSource) for f in logger.filters):
        logger.addFilter(PackageSource())
