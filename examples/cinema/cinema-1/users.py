"""cinema-1 users: a user's bookings, then the movie booked; stops at the
first failure (a sequence of dependent calls)."""
from flask import Flask

from cinema import TIMEOUT_LEAF, answer_with_movie, get, serve

app = Flask(__name__)


@app.route("/users/<user>/bookings")
def user_bookings(user):
    return answer_with_movie(get("bookings", f"/bookings/{user}", TIMEOUT_LEAF))


if __name__ == "__main__":
    serve(app)
