"""cinema-2 users: asks bookings, which itself asks movies (a chain)."""
from flask import Flask, abort, jsonify

from cinema import TIMEOUT_MIDDLE, get, serve

app = Flask(__name__)


@app.route("/users/<user>/bookings")
def user_bookings(user):
    answer = get("bookings", f"/bookings/{user}", TIMEOUT_MIDDLE)
    if answer is None:
        abort(503)
    return jsonify({"bookings": answer["bookings"], "movies": [answer["movie"]]})


if __name__ == "__main__":
    serve(app)
