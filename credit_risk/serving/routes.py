"""The routes the service answers, known at the edge: unknown paths and methods never reach
BentoML, whose request metrics would label each unknown path as a series of its own.

An unknown path is a JSON 404 and a known path asked with a method it does not take a JSON 405
with `Allow`, both at the edge; the request metrics label every path outside the table `other`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from credit_risk.serving.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    send_json,
    unread_body_headers,
)

OTHER: Final = "other"
"""The route label of every path the service does not serve."""

GET: Final = frozenset({"GET", "HEAD"})
POST: Final = frozenset({"POST"})


@dataclass(frozen=True)
class RouteTable:
    """Every path the service serves, with the methods each takes; `plain` paths (probes and
    the scrape endpoint) answer a wrong method as their framework does, untouched."""

    methods: Mapping[str, frozenset[str]]
    plain: frozenset[str] = field(default_factory=frozenset)
    trees: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Prefixes whose sub-paths are served (`/decisions/<id>`), with their methods."""
    shapes: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    """For a tree listed here, the sub-paths it serves (after its `/`); any other is unknown."""

    def label(self, path: str | None) -> str:
        """The path as a metric label: itself when served, its tree's (`/decisions/*`) when
        under one, else `other` (bounded)."""
        if path is None:
            return OTHER
        if path in self.methods:
            return path
        tree = self._tree(path)
        return f"{tree}/*" if tree is not None else OTHER

    def allowed(self, path: str) -> frozenset[str] | None:
        """The methods `path` takes, or None when the service does not serve it."""
        found = self.methods.get(path)
        if found is not None:
            return found
        tree = self._tree(path)
        return self.trees[tree] if tree is not None else None

    def _tree(self, path: str) -> str | None:
        tree = next((t for t in self.trees if path.startswith(t + "/")), None)
        shape = self.shapes.get(tree) if tree is not None else None
        if tree is None or shape is None or shape.fullmatch(path[len(tree) + 1 :]):
            return tree
        return None

    @classmethod
    def of(
        cls,
        posts: Iterable[str],
        gets: Iterable[str],
        plain: Iterable[str] = (),
        get_trees: Iterable[str] = (),
        shapes: Mapping[str, str] = MappingProxyType({}),
    ) -> RouteTable:
        """A table from the POST-only and GET-only paths; `plain` ones are GET paths too, and
        what is under a `get_trees` prefix is a GET path (every sub-path, or for a tree in
        `shapes` those its regular expression matches)."""
        methods = dict.fromkeys(posts, POST)
        methods.update(dict.fromkeys((*gets, *plain), GET))
        compiled = {tree: re.compile(shape) for tree, shape in shapes.items()}
        return cls(methods, frozenset(plain), dict.fromkeys(get_trees, GET), compiled)


class KnownRoutesMiddleware:
    """Answer a path the service does not serve (404) or a method a path does not take (405)
    with JSON at the edge; pass everything else, and the plain paths, through."""

    outside_bentoml: Final = True

    def __init__(self, app: ASGIApp, routes: RouteTable) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass on; reads no body."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope.get("method", "")
        allowed = self.routes.allowed(path)
        if allowed is None:
            await send_json(
                send, 404, {"error": f"no such route: {path}"}, unread_body_headers(scope)
            )
            return
        if method not in allowed and path not in self.routes.plain:
            listed = ", ".join(sorted(allowed))
            await send_json(
                send,
                405,
                {"error": f"method {method} not allowed on {path}; allowed: {listed}"},
                [(b"allow", listed.encode()), *unread_body_headers(scope)],
            )
            return
        await self.app(scope, receive, send)
