"""ASGI entry point: HTTP through Django, websockets through Channels (session auth, same-origin only)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from server.config import env_bool  # noqa: E402
from server.routing import websocket_urlpatterns  # noqa: E402

# The UI's CSS and ES modules under /static/ (daphne serves no files itself). A proxy that serves /static/
# (deploy/nginx.conf) never forwards those paths here, so this only matters without one (make run, tests).
http_app = ASGIStaticFilesHandler(django_app) if env_bool("LVIT_SERVE_STATIC", True) else django_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
