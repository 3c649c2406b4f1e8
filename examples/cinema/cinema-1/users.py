"""cinema-1 users: a user's bookings, then the movie booked; stops at the
first failure (a sequence of dependent calls)."""
from flask import Flask, abort, jsonify

from cinema import TIMEOUT_LEAF, first_movie, get, serve

app = Flask(__name__)


@app.route("/users/<user>/bookings")
def user_bookings(user):
    bookings = get("bookings", f"/bookings/{user}", TIMEOUT_LEAF)
    if bookings is None:
        abort(503)
    movie = get("movies", f"/movies/{first_movie(bookings)}", TIMEOUT_LEAF)
    if movie is None:
        abort(503)
    return jsonify({"bookings": bookings, "movies": [movie]})


if __name__ == "__main__":
    serve(app)
