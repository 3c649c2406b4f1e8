"""leaf: answers "ok" after LEAF_DELAY seconds, a thread per connection,
keeping connections alive (HTTP/1.1; Flask's own server closes each one),
so that a caller's pool can hold on to them."""
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = float(os.environ.get("LEAF_DELAY", "0"))


class Leaf(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/leaf":
            self.send_error(404)
            return
        time.sleep(DELAY)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


ThreadingHTTPServer(("127.0.0.1", 5001), Leaf).serve_forever()
