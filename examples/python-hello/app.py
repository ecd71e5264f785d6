"""A tiny web app for Haven's demo and tests: answers every GET with a greeting.

Only the standard library: the Python buildpack installs nothing.
"""

import os
import signal
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = "{} from {} ({})\n".format(
            os.environ.get("GREETING", "Hello"),
            os.environ.get("DYNO", "?"),
            socket.gethostname(),
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("%s %s" % (self.address_string(), fmt % args), flush=True)


class Server(ThreadingHTTPServer):
    # On SIGTERM, requests in flight finish before the process exits.
    daemon_threads = False
    block_on_close = True


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    server = Server(("0.0.0.0", port), Hello)
    signal.signal(
        signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start()
    )
    print("listening on port {}".format(port), flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)
