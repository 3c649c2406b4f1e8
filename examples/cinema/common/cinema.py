"""What the cinema services share: their data, how they call each other,
and how they start. Services call each other by name on localhost ports,
unmodified: Filibuster sees their calls from the kernel.

Timeouts shrink down the call chain (users waits longer than bookings waits
for movies), so that a timeout deep in the chain surfaces as an answer, not
as a second timeout racing the first.
"""
import sys

import requests
from flask import Flask, abort, jsonify

PORTS = {
    "users": 5000,
    "bookings": 5001,
    "movies": 5002,
    "bookings-primary": 5001,
    "bookings-secondary": 5003,
}

# Seconds a caller waits: users for bookings, anyone for a leaf service.
TIMEOUT_MIDDLE = 0.4
TIMEOUT_LEAF = 0.15

BOOKINGS = {"chris": {"20151201": ["267eedb8-0f5d-42d5-8f43-72426b9fb3e6"]}}
SECONDARY_BOOKINGS = {"chris": {"20151130": ["7daf7208-be4d-4944-a3ae-c1c2f516f3e6"]}}
MOVIES = {
    "267eedb8-0f5d-42d5-8f43-72426b9fb3e6": {"title": "The Good Dinosaur", "rating": 7.4},
    "7daf7208-be4d-4944-a3ae-c1c2f516f3e6": {"title": "Creed", "rating": 8.8},
}


def url(service, path):
    return f"http://localhost:{PORTS[service]}{path}"


def get(service, path, timeout):
    """The JSON `service` answers at `path`, or None if the call failed in
    any way (refused, reset, timed out, or not 200)."""
    try:
        response = requests.get(url(service, path), timeout=timeout)
    except requests.exceptions.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def first_movie(bookings):
    return next(iter(bookings.values()))[0]


def answer_with_movie(bookings):
    """users' answer once it has a user's bookings (None: it could not get
    them): the bookings with the movie booked, or 503."""
    if bookings is None:
        abort(503)
    movie = get("movies", f"/movies/{first_movie(bookings)}", TIMEOUT_LEAF)
    if movie is None:
        abort(503)
    return jsonify({"bookings": bookings, "movies": [movie]})


def serve(app: Flask):
    """Serves `app` on the port of the service named on the command line."""
    app.run(host="localhost", port=PORTS[sys.argv[1]], threaded=True)
