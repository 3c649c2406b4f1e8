"""inventory, the polyglot example's Python service: gRPC
Inventory/GetStock answers an item's stock, kept in Redis (a protocol the
proxy does not speak: passed through, faultable as a connection).
"""
import json
import sys
from concurrent import futures

import grpc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PORT = 5002
REDIS_PORT = 5003


def get_stock(request, context):
    try:
        # A connection per request, tried once: a cache call is one
        # connection here.
        with redis.Redis(
            port=REDIS_PORT,
            socket_timeout=0.15,
            socket_connect_timeout=0.15,
            retry=Retry(NoBackoff(), 0),
        ) as store:
            store.hsetnx("stock", request["item"], 12)
            count = int(store.hget("stock", request["item"]))
    except redis.RedisError as error:
        context.abort(grpc.StatusCode.UNAVAILABLE, f"stock store: {error}")
    return {"item": request["item"], "count": count}


handler = grpc.method_handlers_generic_handler(
    "shop.Inventory",
    {
        "GetStock": grpc.unary_unary_rpc_method_handler(
            get_stock,
            request_deserializer=json.loads,
            response_serializer=lambda m: json.dumps(m).encode(),
        )
    },
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port(f"127.0.0.1:{PORT}")
server.start()
print(f"inventory serving gRPC on {PORT}", file=sys.stderr, flush=True)
server.wait_for_termination()
