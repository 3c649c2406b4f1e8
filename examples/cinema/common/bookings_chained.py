"""bookings for cinema-2 and -3: answers a user's bookings with the details
of the movie booked, fetched from movies; 503 if movies cannot be had."""
from flask import Flask, abort, jsonify

from cinema import BOOKINGS, TIMEOUT_LEAF, first_movie, get, serve

app = Flask(__name__)


@app.route("/bookings/<user>")
def bookings(user):
    if user not in BOOKINGS:
        abort(404)
    movie = get("movies", f"/movies/{first_movie(BOOKINGS[user])}", TIMEOUT_LEAF)
    if movie is None:
        abort(503)
    return jsonify({"bookings": BOOKINGS[user], "movie": movie})


if __name__ == "__main__":
    serve(app)
