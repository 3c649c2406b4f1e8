"""front: serves several requests at once, a thread each. Each request
waits a moment (so that requests overlap), then calls leaf, propagating the
request's W3C `traceparent` as OpenTelemetry would; it answers 503 if leaf
failed.

With PROPAGATE=0 it propagates nothing, and with POOLED=1 its threads share
one pool of keep-alive connections to leaf: then only the kernel's view of
which thread read which request and sent which call ties them together.
"""
import os
import time

import requests
from flask import Flask, abort, jsonify, request

app = Flask(__name__)
PROPAGATE = os.environ.get("PROPAGATE", "1") == "1"
# requests' Session pools connections; urllib3's pool is thread-safe.
http = requests.Session() if os.environ.get("POOLED") == "1" else requests

# How long each request waits before calling leaf: a's call comes well
# before b's, so the calls' order does not depend on scheduling.
DELAYS = {"a": 0.05, "b": 0.15}


@app.route("/work/<name>")
def work(name):
    time.sleep(DELAYS[name])
    headers = {}
    incoming = request.headers.get("traceparent")
    if incoming and PROPAGATE:
        trace_id = incoming.split("-")[1]
        headers["traceparent"] = f"00-{trace_id}-{os.urandom(8).hex()}-01"
    try:
        response = http.get("http://127.0.0.1:5001/leaf", headers=headers, timeout=1)
    except requests.RequestException:
        abort(503)
    if response.status_code != 200:
        abort(503)
    return jsonify({"name": name})


app.run(host="127.0.0.1", port=5000, threaded=True)
