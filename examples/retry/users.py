"""users: a user's bookings, from bookings. A failed call to bookings is
tried once more before users gives up."""
import os

import requests
from flask import Flask, jsonify

BOOKINGS = "http://localhost:5001"
TIMEOUT = 2.0
ATTEMPTS = 2
# The bug: with both attempts failed, the last error escapes and Flask
# answers 500. The fixed service answers 503, which the test accepts.
GIVE_UP_CLEANLY = os.environ.get("GIVE_UP_CLEANLY") == "1"

app = Flask(__name__)


def fetch_bookings(user):
    for attempt in range(ATTEMPTS):
        try:
            response = requests.get(f"{BOOKINGS}/bookings/{user}", timeout=TIMEOUT)
            response.raise_for_status()
            return response.json()
        except requests.exceptions.RequestException:
            if attempt == ATTEMPTS - 1:
                raise


@app.route("/users/<user>/bookings")
def bookings(user):
    try:
        return jsonify(fetch_bookings(user))
    except requests.exceptions.RequestException:
        if not GIVE_UP_CLEANLY:
            raise
        return jsonify({"error": "bookings are unavailable"}), 503


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
