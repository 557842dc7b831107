"""Read a slotstorm latency.hlog with HdrHistogram's Python port (PyPI: hdrhistogram) and
print, per tag (op), the merged histogram's count, p50, p99 and max in microseconds, leaving
out intervals that start before the warm-up ends. Used by tests/run.rs to check the log
against run.json with a reader slotstorm did not write."""
import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

path, warmup_s = sys.argv[1], float(sys.argv[2])
reader = HistogramLogReader(path, HdrHistogram(1, 3_600_000_000, 3))
merged = {}
while True:
    h = reader.get_next_interval_histogram(range_start_time_sec=warmup_s)
    if h is None:
        break
    tag = h.get_tag()
    if tag not in merged:
        merged[tag] = HdrHistogram(1, 3_600_000_000, 3)
    merged[tag].add(h)
out = {
    tag: {
        "count": h.get_total_count(),
        "p50": h.get_value_at_percentile(50.0),
        "p99": h.get_value_at_percentile(99.0),
        "max": h.get_max_value(),
    }
    for tag, h in merged.items()
}
json.dump(out, sys.stdout)
