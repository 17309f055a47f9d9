"""The live web view (``GET /`` on the metrics port): opportunities, spreads, feed health and refusals,
updated over Server-Sent Events. Plain static files, no build step; see scanner/web/server.py."""

from scanner.web.server import WebView

__all__ = ["WebView"]
