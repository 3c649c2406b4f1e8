"""bookings: a user's bookings, with movie titles from movies. When movies
fails, bookings still answers, without titles: a graceful degradation that
needs time to happen."""
import os

import requests
from flask import Flask, jsonify

TIMEOUT = float(os.environ.get("TIMEOUT", "1.0"))
MOVIES = "http://localhost:5002"
BOOKINGS = {"chris": ["267eedb8", "7daf7208"]}

app = Flask(__name__)


@app.route("/bookings/<user>")
def bookings(user):
    movies = BOOKINGS.get(user, [])
    try:
        response = requests.get(f"{MOVIES}/movies", params={"ids": ",".join(movies)}, timeout=TIMEOUT)
        response.raise_for_status()
        titles = response.json()
    except requests.exceptions.RequestException:
        titles = {}
    return jsonify([{"movie": m, "title": titles.get(m)} for m in movies])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5001)
