"""``url:`` feeds: lists fetched from a URL, cached on disk, refreshed once per machine.

- ``settings``: the ``ALLOW_FEED_*`` keys, validated (no HTTP library needed).
- ``fetch``: one GET with urllib3 (TLS verified, a deadline, a size cap, conditional headers).
- ``cache``: the cache folder, the copy and its validators, written atomically.
- ``service``: the app's feeds, refreshed in the background under a file lock (filelock).
- ``matcher``: the ``url:`` rule type (registered in ``plugins.DEFAULT_PLUGINS``).
"""
