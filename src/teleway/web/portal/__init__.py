"""The web portal: server-rendered pages for account users and operators (see docs/portal.md).

`build_portal(ctx)` returns the Starlette application that `web.app` mounts at `/`.
"""

from __future__ import annotations

from teleway.web.portal.app import build_portal

__all__ = ["build_portal"]
