"""bookings: a user's bookings, with movie titles from movies. Without
movies, bookings still answers, without titles."""
import requests
from flask import Flask, jsonify

MOVIES = "http://localhost:5002"
TIMEOUT = 0.5
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
