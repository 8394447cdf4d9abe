"""The route class of every router: a route that takes a body checks the caller's token before it
reads a byte of the body, reads the body within the route's limit, and checks a JSON body off the
event loop; only then does FastAPI parse and validate it and run the route.

FastAPI on its own reads and parses the body before it resolves any dependency, the token
included: an anonymous client could make the server buffer and parse up to the body limit on
every request. Here an unknown token is answered 401 before the body is read, and the connection
is closed (``api.middleware.CloseUnfinishedBody``), so the rest of the body is never received.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from api.body_check import body_size_of, body_too_large, check_json, limit_bytes, read_body
from api.deps import TokenRule


class GuardedRoute(APIRoute):
    def token_rule(self) -> TokenRule | None:
        """The rule of the route's token dependency (None: the route takes no token, as the
        dashboard's sign-in form, whose body carries the token)."""
        rules = [d.call for d in self.dependant.dependencies if isinstance(d.call, TokenRule)]
        return rules[0] if rules else None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # FastAPI reads no body (the adapter upload reads its own)
        rule = self.token_rule()
        size = body_size_of(self.endpoint)

        async def guarded(request: Request) -> Response:
            if rule is not None:
                await rule.authorize(request)
            settings = request.app.state.settings
            max_bytes = limit_bytes(settings, size)
            body = await read_body(request, max_bytes, partial(body_too_large, size, max_bytes))
            await check_json(request, body, settings)
            return await handler(request)

        return guarded
