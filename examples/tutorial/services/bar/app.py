"""bar: calls baz and handles every way that call can fail."""
import os
import requests
from flask import Flask, jsonify
from werkzeug.exceptions import ServiceUnavailable

# Where baz is reached (a container is given its address).
BAZ_URL = os.environ.get("BAZ_URL", "http://localhost:5002")

app = Flask(__name__)


@app.route("/health-check", methods=["GET"])
def health_check():
    return jsonify({"status": "OK"})


@app.route("/bar/baz", methods=["GET"])
def bar():
    try:
        response = requests.get(BAZ_URL + "/baz", timeout=0.5)
    except requests.exceptions.ConnectionError:
        raise ServiceUnavailable("The baz service is unavailable.")
    except requests.exceptions.Timeout:
        raise ServiceUnavailable("The baz service timed out.")
    if response.status_code != 200:
        raise ServiceUnavailable("The baz service is malfunctioning.")
    return "bar " + response.text


if __name__ == "__main__":
    app.run(port=5001, host="0.0.0.0")
