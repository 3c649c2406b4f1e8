"""auth: logs users in and verifies their tokens."""
import secrets

from flask import Flask, abort, jsonify, request

app = Flask(__name__)

USERS = {"ada": "lovelace"}
tokens = {}


@app.post("/login")
def login():
    body = request.get_json(force=True)
    if USERS.get(body.get("user")) != body.get("password"):
        abort(401)
    token = secrets.token_hex(8)
    tokens[token] = body["user"]
    return jsonify(token=token)


@app.get("/verify")
def verify():
    user = tokens.get(request.headers.get("Authorization", ""))
    if user is None:
        abort(401)
    return jsonify(user=user)


if __name__ == "__main__":
    app.run(port=5400, threaded=False)
