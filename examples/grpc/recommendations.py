"""recommendations: movies for a user, and what is trending. A leaf."""
import rpc


def for_you(request, context):
    return {"movies": ["The Good Dinosaur"]}


def trending(request, context):
    return {"movies": ["Creed"]}


rpc.serve("recommendations", {"ForYou": for_you, "Trending": trending})
