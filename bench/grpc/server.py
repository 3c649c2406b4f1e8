"""The echo server of `cargo xtask bench --only reconnect`: grpcio, one
generic unary method (`/bench.Echo/Echo`), no schema."""
import sys
from concurrent import futures

import grpc


def echo(request, context):
    return request


handler = grpc.method_handlers_generic_handler(
    "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
)
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
server.start()
print("listening", flush=True)
server.wait_for_termination()
