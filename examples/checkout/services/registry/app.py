"""registry: tells services where their peers are."""
import os

from flask import Flask, abort, jsonify

HOST = os.environ.get("PEER_HOST", "0.0.0.0")
SERVICES = {"inventory": f"http://{HOST}:5002"}

app = Flask(__name__)


@app.route("/services/<name>")
def lookup(name):
    if name not in SERVICES:
        abort(404)
    return jsonify({"name": name, "url": SERVICES[name]})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5003)
