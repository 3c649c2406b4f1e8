"""back: builds reports, one job per report name; a job is ready on its
third status poll."""
from flask import Flask, jsonify

polls = {}

app = Flask(__name__)


@app.route("/reports/<name>", methods=["POST"])
def start(name):
    polls[name] = 0
    return jsonify({"job": name}), 202


@app.route("/jobs/<job>")
def status(job):
    polls[job] = polls.get(job, 0) + 1
    return jsonify({"ready": polls[job] >= 3})


@app.route("/jobs/<job>/result")
def result(job):
    return jsonify({"job": job, "total": 42})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5001)
