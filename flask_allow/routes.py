"""Per-route and per-blueprint rules: ``@allow.exempt`` and ``@allow.restrict(rules, default="deny")``.

Marks are attributes on the objects themselves (view function, view class, blueprint), found at
request time through ``app.view_functions[request.endpoint]`` and ``app.blueprints``, so the order
of ``@allow.exempt`` and ``@app.route`` does not matter and nothing is wrapped. Each app compiles
every restriction once (``init_app``, ``reload()``, or at registration on an app already guarded)
and caches, per endpoint, the rule lists that apply. A restriction is named in reasons and logs for
the endpoint it guards (``view:intranet.ops``) once the app has one, else for the object itself.
"""

from __future__ import annotations

import copy
import inspect
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Flask, Request

from .client import Client
from .decision import Decision
from .engine import Engine, combine, fatal_lints
from .errors import ConfigError

if TYPE_CHECKING:
    from .extension import AppState

T = TypeVar("T")

#: The attribute holding marks on a view function, view class or blueprint:
#: a dict of ``RouteMarks`` (one per extension) to ``Mark``.
MARKS_ATTR = "__flask_allow_marks__"
#: ``Decision.scope`` and trace name of the global rules.
GLOBAL = "ADDRESS_RESTRICTION"


class Restriction:
    """One ``restrict(rules, default)`` as applied to one target, compiled by each app."""

    __slots__ = ("default_allow", "label", "mark", "rules")

    def __init__(self, rules: list[Any], default_allow: bool, label: str) -> None:
        self.rules = rules
        self.default_allow = default_allow
        #: The target's own label (``view:module.name``, ``blueprint:name``); each app names it
        #: for its endpoint where it has one (``RouteTable.label``).
        self.label = label
        #: The mark of the target it was applied to (a mark of its own until its rules compiled
        #: for every app guarded then).
        self.mark = Mark(label)

    def __repr__(self) -> str:
        return f"<Restriction {self.label} default {'allow' if self.default_allow else 'deny'}>"


class Mark:
    """What one extension said about one target: exempt or not, and its restrictions in order."""

    __slots__ = ("exempt", "label", "restrictions")

    def __init__(self, label: str) -> None:
        #: The target's own label: ``view:module.name``, ``view:module.Class`` or ``blueprint:name``.
        self.label = label
        self.exempt = False
        self.restrictions: list[Restriction] = []

    def copy(self) -> Mark:
        made = Mark(self.label)
        made.exempt, made.restrictions = self.exempt, list(self.restrictions)
        return made


class Marks(dict["RouteMarks", Mark]):
    """An object's marks, knowing whose they are: ``functools.wraps`` copies the attribute to a
    wrapper (which so carries the marks of the view it wraps), and a mark given to the wrapper
    then must not change the wrapped view's (see ``RouteMarks._mark``)."""

    __slots__ = ("owner",)

    def __init__(self, owner: Any) -> None:
        super().__init__()
        try:
            self.owner: Any = weakref.ref(owner)
        except TypeError:  # an object that takes no weak reference: known by its id
            self.owner = id(owner)

    def owned_by(self, owner: Any) -> bool:
        found = self.owner
        return found == id(owner) if isinstance(found, int) else found() is owner


def target_of(target: Any) -> tuple[Any, str]:
    """Return the object that carries the mark for ``target``, and the target's label.

    A bound method (a blueprint's ``send_static_file``) cannot carry attributes; it is returned
    as it is and its marks are kept by the extension, keyed by method equality (same function,
    same object), so only that object's view is marked.
    """
    if isinstance(target, Blueprint):
        return target, f"blueprint:{target.name}"
    if inspect.ismethod(target):
        owner = target.__self__
        return target, f"view:{target.__func__.__qualname__}@{getattr(owner, 'name', None) or type(owner).__name__}"
    if isinstance(target, type) or inspect.isfunction(target):
        return target, f"view:{target.__module__}.{target.__qualname__}"
    if callable(target) and hasattr(target, "__dict__"):
        name = getattr(target, "__qualname__", None) or type(target).__qualname__
        return target, f"view:{getattr(target, '__module__', None) or type(target).__module__}.{name}"
    raise TypeError(
        f"flask_allow can mark a view function, a View class or a Blueprint, not {type(target).__name__} {target!r}"
    )


def view_owners(view: Any) -> list[Any]:
    """What may carry marks for a view, outside in: its view class and bases (bases first), itself."""
    view_class = getattr(view, "view_class", None)
    owners = list(reversed(view_class.__mro__)) if isinstance(view_class, type) else []
    owners.append(view)
    return owners


def marks_on(owner: Any) -> dict[RouteMarks, Mark] | None:
    """The marks an object carries itself (a class's own, not its bases')."""
    if isinstance(owner, type):
        return owner.__dict__.get(MARKS_ATTR)
    return getattr(owner, MARKS_ATTR, None)


def unreadable_client(client: Client) -> Decision:
    """Deny a client a plugin named but could not read (an unreadable proxy header), rules or not."""
    return Decision(client, None, False, f"the client address is unknown: {client.via[-1]}")


def parse_default(default: Any) -> bool:
    """``"deny"`` or ``"allow"`` -> whether the route's default allows."""
    if not isinstance(default, str) or default.lower() not in ("allow", "deny"):
        raise ConfigError("must be 'allow' or 'deny'", "restrict(default=...)", default)
    return default.lower() == "allow"


class RouteMarks:
    """The route marks of one ``FlaskAllow``: what it exempts and restricts, and the apps it guards."""

    def __init__(self) -> None:
        #: Every restriction, in registration order (each app compiles all of them).
        self.restrictions: list[Restriction] = []
        #: The marks of the exempt targets, in registration order (``flask allow rules``).
        self.exempted: list[Mark] = []
        self.count = 0
        self.apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        #: Marks of bound methods, which cannot carry an attribute.
        self.bound: dict[Any, Mark] = {}

    def _tables(self) -> list[RouteTable]:
        tables = []
        for app in list(self.apps):
            state = app.extensions.get("flask_allow")
            table = getattr(state, "routes", None)
            if isinstance(table, RouteTable) and table.marks is self:
                tables.append(table)
        return tables

    def _mark(self, owner: Any, label: str) -> Mark:
        if inspect.ismethod(owner):
            return self.bound.setdefault(owner, Mark(label))
        marks = marks_on(owner)
        if not isinstance(marks, Marks) or not marks.owned_by(owner):
            # none yet, or a wrapper's copy of the wrapped view's (or a class's, read from an
            # instance): the owner's own from now on, copied, so the other's never change
            own = Marks(owner)
            for key, found in (marks or {}).items():
                own[key] = found.copy()
            setattr(owner, MARKS_ATTR, own)
            marks = own
        mark = marks.get(self)
        if mark is None:
            mark = marks[self] = Mark(label)
        return mark

    def exempt(self, target: T) -> T:
        """Skip the global rules (and enclosing blueprints' restrictions) for ``target``."""
        owner, label = target_of(target)
        mark = self._mark(owner, label)
        if not mark.exempt:
            mark.exempt = True
            self.exempted.append(mark)
            self.count += 1
            for table in self._tables():
                table.changed()
        return target

    def restrict(self, rules: Sequence[Any], default: str = "deny") -> Callable[[T], T]:
        """Return a decorator adding ``rules`` (``ADDRESS_RESTRICTION`` format) to a view or blueprint."""
        default_allow = parse_default(default)
        if not isinstance(rules, (list, tuple)):
            raise ConfigError(
                f"must be a list of dicts with ALLOW and/or DENY, not {type(rules).__name__}", "restrict(rules)", rules
            )
        frozen = copy.deepcopy(list(rules))

        def decorator(target: T) -> T:
            owner, label = target_of(target)
            restriction = Restriction(frozen, default_allow, label)
            tables = self._tables()
            compiled: list[tuple[RouteTable, Engine]] = []
            try:  # named for the object here; each app names it for its endpoint once it has one
                for table in tables:
                    compiled.append((table, table.compile(restriction, label)))
            except BaseException:
                for _, engine in compiled:
                    engine.close()
                raise
            restriction.mark = self._mark(owner, label)
            restriction.mark.restrictions.append(restriction)
            self.restrictions.append(restriction)
            self.count += 1
            for table, engine in compiled:
                table.add(restriction, engine)
            return target

        return decorator


class Chain:
    """The rule lists that apply to one endpoint, in order: ``(scope, engine)`` pairs.

    Empty ``engines`` with ``exempt`` set: the request is exempt from every rule.
    """

    __slots__ = ("engines", "exempt", "view")

    def __init__(self, view: Any, engines: tuple[tuple[str, Engine], ...], exempt: str | None) -> None:
        self.view = view
        self.engines = engines
        #: The label of the innermost exempt target, or None.
        self.exempt = exempt


class RouteTable:
    """One app's compiled route rules (part of its state, rebuilt by ``reload()``)."""

    def __init__(self, state: AppState, marks: RouteMarks) -> None:
        self.marks = marks
        self.state = state
        app = state.app
        self._views = app.view_functions
        self._blueprints = app.blueprints
        self.engine = state.engine
        self._engines: dict[Restriction, Engine] = {}
        self._chains: dict[str | None, Chain] = {}
        #: Where each mark is found in this app: its view's endpoints, or its blueprint's names.
        self._names: dict[Mark, list[str]] = {}
        self._named: tuple[int, int, int] | None = None  # what the names were found for
        self.active = bool(marks.count)
        self.name_routes()
        try:
            for restriction in list(marks.restrictions):
                self._engines[restriction] = self.compile(restriction, self.label(restriction.mark))
        except BaseException:
            self.close()
            raise

    @property
    def engines(self) -> dict[Restriction, Engine]:
        """Each restriction's compiled rules, named for the endpoints the app has now."""
        self.name_routes()
        return self._engines

    def label(self, mark: Mark) -> str:
        """How this app names a mark: ``view:ENDPOINT`` or ``blueprint:NAME`` when it is found
        at exactly one, else the target's own label (``view:module.name``)."""
        names = self._names.get(mark, ())
        if len(names) != 1:
            return mark.label
        return f"{mark.label.partition(':')[0]}:{names[0]}"

    def exempt_labels(self) -> list[str]:
        """The exempt targets, in registration order, as this app names them."""
        self.name_routes()
        return [self.label(mark) for mark in self.marks.exempted]

    def name_routes(self) -> None:
        """Find where each mark is (endpoints, blueprint names) and name the compiled rules after it.

        Done again only when the app's views, blueprints or the marks changed: views are added
        before the first request, so on the request path this is one comparison.
        """
        seen = (len(self._views), len(self._blueprints), self.marks.count)
        if seen == self._named:
            return
        names: dict[Mark, list[str]] = {}
        for name, blueprint in self._blueprints.items():
            mark = self._mark_of(blueprint)
            if mark is not None:
                names.setdefault(mark, []).append(name)
        for endpoint, view in self._views.items():
            for owner in view_owners(view):
                mark = self._mark_of(owner)
                if mark is not None:
                    names.setdefault(mark, []).append(endpoint)
        self._names = names
        self._named = seen
        for restriction, engine in self._engines.items():
            engine.rename(self.label(restriction.mark))
        self._chains = {}

    def compile(self, restriction: Restriction, label: str) -> Engine:
        """Compile one restriction, named ``label``, with this app's rule types (raises ``ConfigError``)."""
        engine = self.state.make_engine(restriction.rules, label, scope=label, default_allow=restriction.default_allow)
        if engine.lints and self.state.settings.lints_fatal:
            engine.close()
            raise combine(fatal_lints(engine.lints))
        for lint in engine.lints:
            self.state.app.logger.warning("flask_allow: %s", lint)
        return engine

    def add(self, restriction: Restriction, engine: Engine) -> None:
        """Take a restriction registered after this app was guarded."""
        self._engines[restriction] = engine
        self.changed()

    def changed(self) -> None:
        """Marks changed: forget the cached chains and names."""
        self.active = bool(self.marks.count)
        self._chains = {}
        self._named = None

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()

    def chain(self, endpoint: str | None) -> Chain:
        """The rule lists that apply to requests for ``endpoint`` (None: no route matched)."""
        view = self._views.get(endpoint) if endpoint is not None else None
        chain = self._chains.get(endpoint)
        if chain is None or chain.view is not view:
            self.name_routes()
            chain = self._chains[endpoint] = self._resolve(endpoint, view)
        return chain

    def _mark_of(self, owner: Any) -> Mark | None:
        """This extension's mark on ``owner`` (a blueprint, view class or view), or None."""
        if inspect.ismethod(owner):
            return self.marks.bound.get(owner)
        marks = marks_on(owner) if owner is not None else None
        return marks.get(self.marks) if marks else None

    def _resolve(self, endpoint: str | None, view: Any) -> Chain:
        found: list[Mark] = []
        seen: set[int] = set()

        def take(owner: Any) -> None:
            mark = self._mark_of(owner)
            if mark is not None and id(mark) not in seen:
                seen.add(id(mark))
                found.append(mark)

        if endpoint is not None:
            names = []
            blueprint = endpoint.rpartition(".")[0]
            while blueprint:
                names.append(blueprint)
                blueprint = blueprint.rpartition(".")[0]
            for name in reversed(names):  # outermost first
                take(self._blueprints.get(name))
        if view is not None:
            for owner in view_owners(view):
                take(owner)
        engines: list[tuple[str, Engine]] = [(GLOBAL, self.engine)]
        exempt = None
        for mark in found:
            if mark.exempt:
                engines = []
                exempt = self.label(mark)
            for restriction in mark.restrictions:
                engine = self._engine(restriction)
                engines.append((engine.scope or GLOBAL, engine))
        return Chain(view, tuple(engines), exempt)

    def _engine(self, restriction: Restriction) -> Engine:
        engine = self._engines.get(restriction)
        if engine is None:  # registered while this app was being set up: compile it now
            try:
                engine = self._engines[restriction] = self.compile(restriction, self.label(restriction.mark))
            except ConfigError as exc:
                self.state.app.logger.error("flask_allow: %s (requests to it are denied)", exc)
                engine = Engine([], default_allow=False, scope=self.label(restriction.mark))
        return engine

    def decide(self, req: Request, client: Client) -> Decision:
        """Decide for a request: the global rules, then each restriction; exempt skips them."""
        rule = req.url_rule
        chain = self.chain(rule.endpoint if rule is not None else None)
        if client.key is None and client.via and chain.engines:
            return unreadable_client(client)
        decision = None
        for _, engine in chain.engines:
            decision = engine.decide(client)
            if not decision.allowed:
                return decision
        if decision is None:
            decision = Decision(client, None, True, scope=chain.exempt)
            decision.exempt = True
            decision.enforced = False
        return decision
