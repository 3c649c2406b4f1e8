"""foo: calls bar. The bug: no handler for a connection error to bar, so
foo answers 500 instead of 503 when bar is down."""
import os
import requests
from flask import Flask, jsonify
from werkzeug.exceptions import ServiceUnavailable

# Where bar is reached (a container is given its address).
BAR_URL = os.environ.get("BAR_URL", "http://localhost:5001")

app = Flask(__name__)


@app.route("/health-check", methods=["GET"])
def health_check():
    return jsonify({"status": "OK"})


@app.route("/foo/bar/baz", methods=["GET"])
def foo():
    try:
        response = requests.get(BAR_URL + "/bar/baz", timeout=1.5)
    except requests.exceptions.Timeout:
        raise ServiceUnavailable("The bar service timed out.")
    if response.status_code != 200:
        raise ServiceUnavailable("The bar service is malfunctioning.")
    return "foo " + response.text


if __name__ == "__main__":
    app.run(port=5000, host="0.0.0.0")
