"""users: a user's bookings, from bookings. The same timeout at every hop,
as many applications configure it."""
import os

import requests
from flask import Flask, jsonify

TIMEOUT = float(os.environ.get("TIMEOUT", "1.0"))
BOOKINGS = "http://localhost:5001"

app = Flask(__name__)


@app.route("/users/<user>/bookings")
def bookings(user):
    try:
        response = requests.get(f"{BOOKINGS}/bookings/{user}", timeout=TIMEOUT)
        response.raise_for_status()
    except requests.exceptions.RequestException:
        return jsonify({"error": "bookings are unavailable"}), 503
    return jsonify(response.json())


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
