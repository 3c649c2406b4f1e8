"""What the shop's gRPC services share: their ports, and gRPC calls with
JSON messages. Real gRPC over HTTP/2 (grpcio), with generic handlers
instead of generated stubs, so the example needs no protoc step.
"""
import json
import sys
from concurrent import futures

import grpc

PORTS = {"frontend": 5000, "accounts": 5001, "ledger": 5002, "recommendations": 5003}

# Seconds a caller waits: frontend for accounts, anyone for a leaf service.
DEADLINE_MIDDLE = 0.4
DEADLINE_LEAF = 0.15


def _encode(message):
    return json.dumps(message).encode()


def _decode(data):
    return json.loads(data)


_channels = {}


def call(service, method, request, timeout):
    """Calls `service`'s `method` on a channel kept for the process (so
    calls share one HTTP/2 connection); raises grpc.RpcError on failure."""
    channel = _channels.get(service)
    if channel is None:
        channel = _channels[service] = grpc.insecure_channel(f"127.0.0.1:{PORTS[service]}")
    rpc = channel.unary_unary(
        f"/shop.{service.capitalize()}/{method}",
        request_serializer=_encode,
        response_deserializer=_decode,
    )
    return rpc(request, timeout=timeout)


def serve(service, methods):
    """Serves `methods` (name → function(request, context)) as `service`
    until killed."""
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            function, request_deserializer=_decode, response_serializer=_encode
        )
        for name, function in methods.items()
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(f"shop.{service.capitalize()}", handlers),)
    )
    server.add_insecure_port(f"127.0.0.1:{PORTS[service]}")
    server.start()
    print(f"{service} serving gRPC on {PORTS[service]}", file=sys.stderr, flush=True)
    server.wait_for_termination()
