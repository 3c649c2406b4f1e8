"""gateway: the public entry point. Looks up where inventory lives in the
registry, then asks it for stock. Written the way Flask services usually
are: peers at the address Flask prints (0.0.0.0), a URL taken from another
service's answer."""
import os

import requests
from flask import Flask, jsonify

REGISTRY_URL = "http://{}:5003".format(os.environ.get("PEER_HOST", "0.0.0.0"))
TIMEOUT = 1.0

app = Flask(__name__)


def unavailable(service, why):
    response = jsonify({"error": why, "service": service})
    response.status_code = 503
    return response


@app.route("/checkout/<item>")
def checkout(item):
    try:
        found = requests.get(f"{REGISTRY_URL}/services/inventory", timeout=TIMEOUT)
        found.raise_for_status()
    except requests.exceptions.RequestException as e:
        return unavailable("registry", str(e))
    inventory_url = found.json()["url"]
    try:
        stock = requests.get(f"{inventory_url}/stock/{item}", timeout=TIMEOUT)
    except requests.exceptions.RequestException as e:
        return unavailable("inventory", str(e))
    if stock.status_code == 404:
        return jsonify({"item": item, "available": False})
    if not stock.ok:
        return unavailable("inventory", f"answered {stock.status_code}")
    return jsonify({"item": item, "available": stock.json()["count"] > 0})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
