"""bench/library's reference: an application on redis-py alone. THREADS threads (sharing one
RedisCluster, or one each) loop SET on {user:<n>}:k with 64-byte values for SECONDS, timing
each call with time.monotonic_ns() as slotstorm's redis-py driver does, and print one JSON
line: ops, ops per second, p50 and p99 in ms.

    library_app.py HOST:PORT THREADS SECONDS shared|per-thread
"""
import json
import sys
import threading
import time

from redis.cluster import ClusterNode, RedisCluster


def main():
    seed, threads, seconds, instances = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    host, port = seed.rsplit(":", 1)

    def client():
        return RedisCluster(startup_nodes=[ClusterNode(host, port)], decode_responses=True, socket_timeout=1.0)

    shared = client() if instances == "shared" else None
    lat = [[] for _ in range(threads)]
    ready = threading.Barrier(threads + 1)
    box = {}

    def worker(i):
        c = shared or client()
        ready.wait()
        n, mine, value = i, lat[i], "v" * 64
        while time.monotonic() < box["stop"]:
            t = time.monotonic_ns()
            c.set(f"{{user:{n % 10000}}}:k", value)
            mine.append(time.monotonic_ns() - t)
            n += threads

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    box["stop"] = time.monotonic() + seconds
    ready.wait()
    for t in ts:
        t.join()
    a = sorted(x for one in lat for x in one)
    print(json.dumps({"ops": len(a), "ops_s": len(a) / seconds,
                      "p50_ms": a[len(a) // 2] / 1e6, "p99_ms": a[int(len(a) * 0.99)] / 1e6}))


if __name__ == "__main__":
    main()
