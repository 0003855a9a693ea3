"""Builds the optional C modules (flask_allow/_lookup.c, the search; flask_allow/_logline.c, the
access log's plain lines); everything else is in pyproject.toml.

``optional=True``: without a C compiler the package installs without them and uses the Python
code, which gives the same answers. ``FLASK_ALLOW_PURE_PYTHON=1`` at install time skips it.
"""

import os
import sys

from setuptools import Extension, setup

extensions = []
if os.environ.get("FLASK_ALLOW_PURE_PYTHON", "") in ("", "0"):
    extensions.append(
        Extension(
            "flask_allow._lookup",
            ["flask_allow/_lookup.c"],
            libraries=["ws2_32"] if sys.platform == "win32" else [],
            optional=True,
        )
    )
    extensions.append(Extension("flask_allow._logline", ["flask_allow/_logline.c"], optional=True))

setup(ext_modules=extensions)
