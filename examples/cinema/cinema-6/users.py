"""cinema-6 users: bookings from the primary replica, falling back to the
secondary (which may answer differently: the replicas are eventually
consistent), then the movie booked."""
from flask import Flask

from cinema import TIMEOUT_LEAF, answer_with_movie, get, serve

app = Flask(__name__)


@app.route("/users/<user>/bookings")
def user_bookings(user):
    bookings = get("bookings-primary", f"/bookings/{user}", TIMEOUT_LEAF) or get(
        "bookings-secondary", f"/bookings/{user}", TIMEOUT_LEAF
    )
    return answer_with_movie(bookings)


if __name__ == "__main__":
    serve(app)
