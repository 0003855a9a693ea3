"""A Sphinx extension: a page's link to a file of the repository outside ``docs/`` is a download.

The Markdown pages link to ``../benchmarks/README.md`` and the like so that they read well on a
code host. MyST takes a ``.md`` link for a page of the site and warns when there is no such page;
this transform, run before the links are resolved, turns a link to an existing ``.md`` file
outside the source directory into a download of that file, as MyST does for any other file.
A link to a missing file is left alone, so it still fails the build.
"""

from __future__ import annotations

import os
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform


class RepositoryFileLinks(SphinxTransform):
    """Replace MyST's page references to ``.md`` files outside the site with download links."""

    default_priority = 100

    def apply(self, **kwargs: Any) -> None:
        srcdir = os.path.abspath(self.env.srcdir)
        here = os.path.dirname(self.env.doc2path(self.env.docname))
        for node in list(self.document.findall(addnodes.pending_xref)):
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc":
                continue
            target = str(node["reftarget"])
            if target in self.env.found_docs or not os.path.isabs(target):
                continue
            path = f"{target}.md"
            if os.path.commonpath([srcdir, path]) == srcdir or not os.path.isfile(path):
                continue
            link = addnodes.download_reference(
                refdomain=None,
                reftarget=os.path.relpath(path, here),
                refdoc=node.get("refdoc", self.env.docname),
                reftype="myst",
                refexplicit=True,
                classes=["xref", "download", "myst"],
            )
            link += node.children or [nodes.literal(text=os.path.basename(path))]
            node.replace_self(link)


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the transform."""
    app.add_transform(RepositoryFileLinks)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
