"""The default answer to "who is the client": the socket peer, ``request.remote_addr``."""

from __future__ import annotations

from flask import Request

from flask_allow import hookimpl


@hookimpl(trylast=True)
def flask_allow_client_address(request: Request) -> str:
    return request.remote_addr or ""
