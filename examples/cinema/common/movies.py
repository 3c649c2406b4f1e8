"""movies: details of each movie. A leaf service."""
from flask import Flask, abort, jsonify

from cinema import MOVIES, serve

app = Flask(__name__)


@app.route("/movies/<movie>")
def movie(movie):
    if movie not in MOVIES:
        abort(404)
    return jsonify(MOVIES[movie])


if __name__ == "__main__":
    serve(app)
