"""Builds the optional C lookup (flask_allow/_lookup.c); everything else is in pyproject.toml.

``optional=True``: without a C compiler the package installs without it and uses the pure-Python
lookup, which gives the same answers. ``FLASK_ALLOW_PURE_PYTHON=1`` at install time skips it.
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

setup(ext_modules=extensions)
