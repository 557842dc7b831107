"""An observer slotstorm did not write: the seed's own client, redis-py's RedisCluster with the
seed's settings, looping SET on one key back to back and logging what each op saw.

    redis_py_probe.py HOST:PORT KEY SECONDS OUT

HOST:PORT is one node to discover the cluster from, KEY the key to SET (`{user:42}:probe`),
SECONDS how long to loop, OUT the file to write: one JSON line per op,
`{"start": s, "end": s, "outcome": "ok" | "<exception class name>"}`, with start and end read
from time.time() (wall clock, seconds); a failed op also has `"error"`, the exception's module,
class and message. Every line is flushed as it is written, so a probe
killed mid-run leaves every op it finished. tests/fidelity.rs runs it beside a `slotstorm run`.

What RedisCluster does on errors with these settings (redis-py 5.2.1, redis/cluster.py unless
named otherwise), so that slotstorm's `[client]` policy can be set equal to it:

- Attempts: `RedisCluster._internal_execute_command` (lines 1093-1130) runs a command up to
  1 + `cluster_error_retry_attempts` times, which defaults to 3 (line 498): 4 attempts, i.e.
  `retries = 3`. It retries only `ERRORS_ALLOW_RETRY = (ConnectionError, TimeoutError,
  ClusterDownError)` (line 421); any other error is raised at once.
- Backoff on timeouts and connection errors: none. `_execute_command` (lines 1177-1192)
  disconnects, drops the node from the startup nodes, re-reads the slot map
  (`nodes_manager.initialize()`, CLUSTER SLOTS from the first startup node that answers) and
  re-raises; the outer loop retries at once.
- Backoff on CLUSTERDOWN: a fixed `time.sleep(0.25)`, then the same re-read (lines 1216-1222).
  No growth between attempts, no jitter.
- TRYAGAIN, MOVED and ASK are followed inside `_execute_command`, up to
  `RedisClusterRequestTTL = 16` times per attempt (lines 205, 1142-1215); TRYAGAIN sleeps
  50 ms once half of those are spent. None of them counts as an attempt above.
- `retry_on_timeout=True` adds nothing here: RedisCluster hands every node connection
  `Retry(default_backoff(), 0)` (line 624), zero connection-level retries; the connection's
  `retry_on_timeout` only adds TimeoutError to the errors that zero-retry object would retry
  (redis/connection.py lines 262-273, redis/retry.py lines 58-67). The cluster path reads the
  reply with `parse_response` directly, outside any `call_with_retry`.
- Timeouts: `socket_timeout=1.0` bounds each read, `socket_connect_timeout=1.0` each
  connect; a killed container's address vanishes, so a connect to it times out rather than
  being refused. An op against a dead primary therefore takes about 4 x 1 s before it raises.
  Seen with the attempts traced (node timeout 1000 ms, `docker kill`): while the process dies
  its address still refuses, and an op's 4 attempts fail in ~70 ms with ConnectionError;
  after that each attempt is a 1 s "Timeout connecting to server", until an attempt after
  the election reaches the promoted replica.
- `skip_full_coverage_check=True` is a redis-py-cluster setting that redis-py drops unread
  (`cleanup_kwargs`, lines 177-187, keeps only `REDIS_ALLOWED_KEYS`); redis-py's own
  `require_full_coverage` defaults to False (line 500), which is what the seed meant: the
  client starts and refreshes its slot map even while some slots have no owner.

So the equal slotstorm policy is `timeout = "1s"`, `retries = 3`, `backoff = "0s"`. The one
thing it cannot say is the 250 ms wait that redis-py takes before retrying CLUSTERDOWN alone;
slotstorm's backoff applies to every error class, and on the victim's slots (the figure the
test compares) the errors are timeouts, which redis-py retries without waiting.
"""
import json
import sys
import time

import redis
from redis.cluster import RedisCluster


def connect(host, port, deadline):
    """The seed's client, built as the seed builds it; retried until `deadline` while the
    cluster is still forming."""
    while True:
        try:
            return RedisCluster(
                host=host,
                port=port,
                decode_responses=True,
                skip_full_coverage_check=True,
                retry_on_timeout=True,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
        except Exception as e:  # noqa: BLE001 - any failure to discover is retried alike
            if time.time() > deadline:
                sys.exit(f"redis_py_probe: no cluster at {host}:{port}: {type(e).__name__}: {e}")
            time.sleep(0.1)


def main():
    seed, key, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    host, port = seed.rsplit(":", 1)
    began = time.time()
    rc = connect(host, int(port), began + 10)
    print(f"redis_py_probe: redis-py {redis.__version__}, SET {key} via {seed} for {seconds}s", file=sys.stderr)
    deadline = began + seconds
    counter = 0
    with open(out, "w", encoding="utf-8") as f:
        while time.time() < deadline:
            counter += 1
            start = time.time()
            op = {"start": start}
            try:
                rc.set(key, counter)
                op["outcome"] = "ok"
            except Exception as e:  # noqa: BLE001 - what the application saw is the record
                op["outcome"] = type(e).__name__
                op["error"] = f"{type(e).__module__}.{type(e).__qualname__}: {e}"
            op["end"] = time.time()
            f.write(json.dumps(op) + "\n")
            f.flush()


if __name__ == "__main__":
    main()
