"""The access log: one line per guarded request (``ACCESS_LOG``), on the ``flask.allow`` logger.

``log`` holds ``AccessLog`` (one app's log), ``line`` the message for a decision, ``formatter``
the line formatted as its record would be, ``file`` the rotating file handler, ``queue`` the
opt-in writer thread. The default plugin that writes a line per decision is ``plugin``.
"""

from __future__ import annotations

from .line import escape, format_line, url_of
from .log import AccessLog

__all__ = ["AccessLog", "escape", "format_line", "url_of"]
