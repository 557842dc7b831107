//! A valid workload and chaos file that use every table: the malformed corpus and the
//! property test start from them.

/// A valid workload that uses every table; cases change one line of it.
pub const WORKLOAD: &str = r#"name = "malformed-corpus"
description = "a corpus case"
chaos = "c.toml"
[cluster]
masters = 3
replicas = 1
node_timeout = "2s"
config = { maxmemory = "256mb" }
[load]
duration = "8s"
warmup = "1s"
mode = "open"
rate = 100
interval = "1s"
connections = 2
seed = 7
[client]
timeout = "500ms"
retries = 1
backoff = "50ms"
backoff_max = "1s"
[keys]
count = 100
distribution = "zipfian"
theta = 0.9
value_size = 16
[[op]]
name = "get"
weight = 3
command = ["GET", "k:$id"]
[[op]]
name = "p"
pipeline = [["SET", "{u:$id}:a", "$value"], ["EXPIRE", "{u:$id}:a", 60]]
batch = 2
[[op]]
name = "s"
script = "s.lua"
keys = ["{u:$id}:b"]
args = ["$value"]
[slo]
max_lost_writes = 0
max_send_lag = "1s"
max_failover = "10s"
min_throughput = 10
[slo.p99]
get = "50ms"
"#;

/// A valid chaos file beside it.
pub const CHAOS: &str = r#"seed = 1
[[fault]]
at = "1s"
action = "kill"
target = "redis-1"
duration = "1s"
[[fault]]
at = "3s"
action = "pause"
target = "random-primary"
duration = "500ms"
every = "2s"
count = 2
[[operation]]
at = "2s"
action = "failover"
target = { replica-of = "{user:42}" }
"#;

/// The script the workload names.
pub const SCRIPT: &str = "return redis.call('SET', KEYS[1], ARGV[1])\n";
