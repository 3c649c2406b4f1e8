"""The grpcio client of `cargo xtask bench --only reconnect`: one channel,
unary calls, its connection destroyed (`ss -K`) before every fifth, then
left idle for a millisecond (as between two executions) or, every other
time, called at once; prints each call as [µs, failed, how: 0 as usual, 1
after a destroy and a pause, 2 at once after a destroy]."""
import json
import subprocess
import sys
import time

import grpc

port, count = sys.argv[1], int(sys.argv[2])
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
echo = channel.unary_unary("/bench.Echo/Echo")
calls = []
for n in range(count):
    how = 0 if n == 0 or n % 5 else 1 + (n // 5) % 2
    if how:
        subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", port],
                       check=True, stdout=subprocess.DEVNULL)
    if how == 1:
        time.sleep(0.001)
    started = time.perf_counter()
    try:
        echo(b"ping", timeout=10)
        failed = False
    except grpc.RpcError:
        failed = True
    calls.append([int((time.perf_counter() - started) * 1e6), failed, how])
print(json.dumps(calls))
