"""Rule type ``url:https://...``: a list published at a URL, in the formats ``file:`` reads.

The rule reads the feed's last good copy in the cache folder (and watches it, as ``file:``
watches its file); the app's ``FeedService`` keeps the copy fresh in the background. Needs the
``feeds`` extra (urllib3, filelock): without it a ``url:`` rule is a ``ConfigError``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from flask_allow import ConfigError, Matcher, MatcherContext, hookimpl
from flask_allow.builtins.listfile import FileMatcher, parse_list
from flask_allow.index import SpanSet

from .settings import FeedSettings

INSTALL = "pip install Flask-Allow[feeds]"


def _service_of(context: MatcherContext) -> object:
    try:
        import filelock  # noqa: F401
        import urllib3  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"url: rules need the 'feeds' extra ({exc.name} is missing): {INSTALL}") from None
    from .service import FeedService

    app = context.app
    instance_path = app.instance_path if app is not None else None
    return FeedService.of(context.shared, FeedSettings.from_config(context.config, instance_path), app)


class FeedMatcher(FileMatcher):
    """``url:https://www.cloudflare.com/ips-v4``."""

    prefix = "url"

    def __init__(self, value: str, context: MatcherContext) -> None:
        Matcher.__init__(self, value, context)
        url = value.strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        if parts.scheme.lower() == "http" and not context.automatic:
            context.warn(f"{url} is fetched over plain http: anyone on the way can change the list; use https")
        from .service import FeedService

        service = _service_of(context)
        assert isinstance(service, FeedService)
        self.url = url
        self.service = service
        self.feed = feed = service.feed(url)
        self.path = path = feed.cache.path
        try:
            found = self._read(context)
        except BaseException:
            service.release(feed)
            raise
        self.count = len(found)
        context.loaded(path, self.count, guard=False, url=url)  # the feed checked its shrink before writing
        self._found: SpanSet | None = found
        service.start()

    def _read(self, context: MatcherContext) -> SpanSet:
        feed, service, path = self.feed, self.service, self.path
        outcome = None
        if not feed.cache.exists() and not context.automatic:  # a rebuild never waits on the network
            outcome = service.first_fetch(feed)
        context.watch(path)  # before reading: a copy another process writes meanwhile is seen
        if not feed.cache.exists():
            if outcome is None:
                raise ValueError(f"the cached copy {path} of {self.url} is gone")
            why = outcome.error or outcome.result
            message = f"{self.url} has no cached copy in {feed.cache.folder} and cannot be fetched: {why}"
            if service.settings.required:
                raise ValueError(message)
            context.logger.error(
                "flask_allow: %s: %s; starting with an empty list (ALLOW_FEED_REQUIRED is False)",
                context.location,
                message,
            )
            return SpanSet()
        try:
            found, warnings = parse_list(path)
        except OSError as exc:
            raise ValueError(f"cannot read the cached copy {path} of {self.url}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"the cached copy {path} of {self.url} is not UTF-8 text: {exc}") from None
        for warning in warnings:
            context.warn(warning)
        return found

    def span_set(self) -> SpanSet:
        found = self._found
        self._found = None
        if found is None:
            found = parse_list(self.path)[0] if os.path.exists(self.path) else SpanSet()
        return found

    def explain(self, client: object) -> str:
        if not os.path.exists(self.path):
            return "does not match (no copy of the feed yet)"
        return super().explain(client)

    def describe(self) -> str:
        return f"{self.count} entries from {self.url}"

    def close(self) -> None:
        self.service.release(self.feed)


@hookimpl(trylast=True)
def flask_allow_matchers() -> list[type[Matcher]]:
    return [FeedMatcher]
