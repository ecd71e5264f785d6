#!/usr/bin/env python3
"""Static file server shipped into slugs by Haven's static buildpack.

Standard library only. Serves the site root on 0.0.0.0:$PORT with a threading server.
Configuration comes from static.json at the app root (next to .heroku/):
  root        directory to serve, relative to the app (default "." or "public")
  clean_urls  serve /about from about.html (default false)
  error_page  page served with status 404, relative to root (default "404.html")
Dotfiles and anything resolving outside the root are never served.
"""
import io
import json
import os
import sys
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

APP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_config():
    path = os.path.join(APP, "static.json")
    cfg = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    root = cfg.get("root")
    if root is None:
        if not os.path.isfile(os.path.join(APP, "index.html")) and os.path.isfile(
            os.path.join(APP, "public", "index.html")
        ):
            root = "public"
        else:
            root = "."
    root = os.path.realpath(os.path.join(APP, root))
    return root, bool(cfg.get("clean_urls", False)), cfg.get("error_page", "404.html")


ROOT, CLEAN_URLS, ERROR_PAGE = load_config()


def inside_root(path):
    real = os.path.realpath(path)
    return real == ROOT or real.startswith(ROOT + os.sep)


class Handler(SimpleHTTPRequestHandler):
    server_version = "haven-static"
    sys_version = ""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=ROOT, **kwargs)

    def log_message(self, format, *args):
        sys.stdout.write("%s %s\n" % (self.address_string(), format % args))
        sys.stdout.flush()

    def send_head(self):
        parts = urllib.parse.urlsplit(self.path)
        url_path = urllib.parse.unquote(parts.path)
        if any(p.startswith(".") for p in url_path.split("/") if p):
            return self.not_found()
        fs_path = self.translate_path(self.path)
        if CLEAN_URLS and not os.path.exists(fs_path) and not url_path.endswith("/"):
            if os.path.isfile(fs_path + ".html"):
                self.path = parts.path + ".html" + ("?" + parts.query if parts.query else "")
                fs_path = fs_path + ".html"
        if not os.path.exists(fs_path) or not inside_root(fs_path):
            return self.not_found()
        return super().send_head()

    def list_directory(self, path):
        return self.not_found()

    def not_found(self):
        page = os.path.join(ROOT, ERROR_PAGE)
        if os.path.isfile(page) and inside_root(page):
            with open(page, "rb") as f:
                body = f.read()
            ctype = "text/html; charset=utf-8"
        else:
            body = b"Not Found\n"
            ctype = "text/plain; charset=utf-8"
        self.send_response(404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


def main():
    port = int(os.environ.get("PORT", "5000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    print("Serving %s on 0.0.0.0:%d" % (ROOT, port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
