"""slotstorm's redis-py driver: the workload's ops sent through redis-py's RedisCluster, the
seed's own client, so a run measures what an application on that library sees (its retries,
its slot-map refreshes, its timeouts), not what slotstorm's own client does.

slotstorm starts this with `python3 -c <this file> ` and speaks JSON lines with it (the
protocol, version 1, is described in src/driver/library.rs):

    stdin   {"hello": {...}}          the cluster's seeds and the client's settings, and
                                      "instances": "shared" (one client for every thread)
                                      or "per-thread" (a client of each thread's own)
            {"ping": t}               answered with {"pong": t, "mono_ns": ...} (clock sync)
            {"op": n, "cmds": [[...]], "script": i | null}   one op: send it now
            end of input              finish the ops in flight, then exit
    stdout  {"ready": {"library": "redis-py 5.2.1"}}  or {"fatal": "..."}
            {"op": n, "recv": ns, "sent": ns, "end": ns, "ok": true, "reply": int | null}
            {"op": n, "recv": ns, "sent": ns, "end": ns, "ok": false, "class": "...",
             "maybe_applied": bool, "error": "..."}

Times are time.monotonic_ns() (CLOCK_MONOTONIC). `threads` worker threads take ops from one
queue, as an application's thread pool does: an op that waits for a free thread shows as
`sent - recv`. Ctrl-C reaches this process too (same process group); it is ignored here, as
slotstorm decides when the ops end.
"""
import json
import queue
import signal
import sys
import threading
import time

signal.signal(signal.SIGINT, signal.SIG_IGN)

try:
    import redis
    from redis import exceptions as rex
    from redis.cluster import ClusterNode, RedisCluster
except ImportError as e:
    sys.stdout.write(json.dumps({"fatal": f"redis-py is not installed for {sys.executable}: {e}"}) + "\n")
    sys.stdout.flush()
    sys.exit(1)

out = queue.SimpleQueue()


def writer():
    """Every line to stdout from one thread, flushed when no more are waiting."""
    while True:
        line = out.get()
        if line is None:
            sys.stdout.flush()
            return
        sys.stdout.write(line)
        if out.empty():
            sys.stdout.flush()


def classify(e):
    """slotstorm's error class for what redis-py raised."""
    text = str(e)
    # Subclasses first: BusyLoadingError is a ConnectionError, MovedError an AskError.
    for cls, name in (
        (rex.BusyLoadingError, "loading"),
        (rex.TimeoutError, "timeout"),
        (rex.ClusterDownError, "clusterdown"),
        (rex.SlotNotCoveredError, "clusterdown"),
        (rex.TryAgainError, "tryagain"),
        (rex.MovedError, "moved"),
        (rex.AskError, "ask"),
        (rex.ReadOnlyError, "readonly"),
        (rex.NoScriptError, "noscript"),
    ):
        if isinstance(e, cls):
            return name
    if isinstance(e, rex.ConnectionError):
        return "refused" if "refused" in text.lower() else "reset"
    return "other"


# Whether a failed op may have been applied. RedisCluster retries ConnectionError,
# TimeoutError and ClusterDownError at once (ERRORS_ALLOW_RETRY in redis/cluster.py) and
# raises only the last attempt's error, so whatever an op ends on, an earlier attempt may
# have timed out after sending it: every failed op is unknown, never surely failed.
MAYBE_APPLIED = True


def run_op(client, scripts, cmds, script):
    """Send one op as an application would: a script through its Script object (EVALSHA,
    loading it on NOSCRIPT), one command as a call, several as a non-transactional pipeline
    (which redis-py splits by node). Returns the first reply."""
    if script is not None:
        cmd = cmds[0]
        numkeys = int(cmd[2])
        keys, args = cmd[3 : 3 + numkeys], cmd[3 + numkeys :]
        return scripts[script](keys=keys, args=args)
    if len(cmds) == 1:
        return client.execute_command(*cmds[0])
    pipe = client.pipeline(transaction=False)
    for cmd in cmds:
        pipe.execute_command(*cmd)
    return pipe.execute(raise_on_error=True)[0]


def worker(hello, shared, ops, started):
    """Take ops until the queue says stop: with the shared client, or one of this thread's
    own (`"instances": "per-thread"`, as a process per worker would have)."""
    try:
        client, scripts = shared or open_client(hello)
    except Exception as e:  # noqa: BLE001 - reported to slotstorm, which stops the run
        started.put(e)
        return
    started.put(None)
    while True:
        item = ops.get()
        if item is None:
            return
        recv, msg = item
        sent = time.monotonic_ns()
        try:
            reply = run_op(client, scripts, msg["cmds"], msg.get("script"))
            end = time.monotonic_ns()
            rec = {"op": msg["op"], "recv": recv, "sent": sent, "end": end, "ok": True}
            rec["reply"] = reply if isinstance(reply, int) and not isinstance(reply, bool) else None
        except Exception as e:  # noqa: BLE001 - every failure is reported, classified
            end = time.monotonic_ns()
            rec = {"op": msg["op"], "recv": recv, "sent": sent, "end": end, "ok": False,
                   "class": classify(e), "maybe_applied": MAYBE_APPLIED,
                   "error": f"{type(e).__name__}: {e}"[:300]}
        out.put(json.dumps(rec) + "\n")


def open_client(hello):
    """A client and its Script objects."""
    client = connect(hello)
    return client, [client.register_script(src) for src in hello.get("scripts", [])]


def connect(hello):
    """The seed's client: RedisCluster over the seeds, with the run's timeout and retries."""
    nodes = [ClusterNode(*s.rsplit(":", 1)) for s in hello["seeds"]]
    deadline = time.monotonic() + 30
    while True:
        try:
            return RedisCluster(
                startup_nodes=nodes,
                decode_responses=True,
                require_full_coverage=False,
                socket_timeout=hello["timeout_s"],
                socket_connect_timeout=hello["timeout_s"],
                cluster_error_retry_attempts=hello["retries"],
                password=hello.get("password"),
            )
        except Exception as e:  # noqa: BLE001 - discovery failures are retried, then reported
            if time.monotonic() > deadline:
                raise RuntimeError(f"no cluster at {hello['seeds']}: {type(e).__name__}: {e}") from e
            time.sleep(0.1)


def main():
    writing = threading.Thread(target=writer)
    writing.start()
    first = sys.stdin.readline()
    if not first:
        out.put(None)
        return
    hello = json.loads(first)["hello"]
    ops, started = queue.SimpleQueue(), queue.SimpleQueue()
    threads = []
    try:
        shared = open_client(hello) if hello.get("instances", "shared") == "shared" else None
        threads = [threading.Thread(target=worker, args=(hello, shared, ops, started)) for _ in range(hello["threads"])]
        for t in threads:
            t.start()
        for _ in threads:
            failed = started.get()
            if failed is not None:
                raise failed
    except Exception as e:  # noqa: BLE001 - reported to slotstorm, which stops the run
        for _ in threads:
            ops.put(None)
        out.put(json.dumps({"fatal": f"{type(e).__name__}: {e}"}) + "\n")
        out.put(None)
        writing.join()
        sys.exit(1)
    out.put(json.dumps({"ready": {"library": f"redis-py {redis.__version__}"}}) + "\n")
    for line in sys.stdin:
        recv = time.monotonic_ns()
        msg = json.loads(line)
        if "ping" in msg:
            out.put(json.dumps({"pong": msg["ping"], "mono_ns": time.monotonic_ns()}) + "\n")
        else:
            ops.put((recv, msg))
    for _ in threads:
        ops.put(None)
    for t in threads:
        t.join()
    out.put(None)
    writing.join()


if __name__ == "__main__":
    main()
