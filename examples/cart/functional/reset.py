#!/usr/bin/env python3
"""Puts the cart service back as it started: no carts, ids from c1."""
import requests

requests.post("http://localhost:5401/reset", timeout=5).raise_for_status()
