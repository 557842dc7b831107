//! Stage 2: from the raw structs to a [`Workload`]. Defaults are applied here, rules that
//! relate fields are checked here (open loop needs a rate, embedded-only fields on an
//! external cluster, one body per op), templates are compiled and script files read. Each
//! error points at the field it concerns, or at the table when a field is missing.
//!
//! Length: one function per raw table, each short; the op bodies and cross-file chaos checks
//! live in `resolve/`.

mod ops;
mod slo;

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::chaos::{ChaosPlan, NewNodeRole, NodeRef, Operation, Place, TargetSpec};
use super::error::{Source, SpecError, line_column};
use super::raw::{
    ClusterKind, DistributionKind, Mode, RawClient, RawCluster, RawDuration, RawKeys, RawLoad, RawValueSize,
    RawWorkload,
};
use super::{
    ClientLibrary, ClientPolicy, ClusterTarget, Distribution, Keys, Load, Pacing, ValueSize, Workload,
};
use crate::backend::engine::Engine;
use crate::embedded::EmbeddedSpec;

/// `keys.count` when absent.
const DEFAULT_KEY_COUNT: u64 = 10_000;
/// The most ids a keyspace may have (the zipfian generator sums over all of them once).
const MAX_KEY_COUNT: u64 = 1_000_000_000;
/// `keys.theta` when absent (YCSB's).
const DEFAULT_THETA: f64 = 0.99;
/// `keys.value_size` when absent.
const DEFAULT_VALUE_SIZE: u64 = 64;
/// The longest `$value`: every worker keeps a pool of twice this many random bytes.
const MAX_VALUE_SIZE: u64 = 4 * 1024 * 1024;
/// `load.concurrency` when absent.
const DEFAULT_CONCURRENCY: u64 = 16;
/// The most ops in flight an open loop sizes itself for, and the largest `client.pool`: each
/// in-flight slot is a task with its own buffers (a few KiB).
pub const MAX_IN_FLIGHT: usize = 16_384;
/// The highest open-loop rate: far above what one machine's driver sends.
const MAX_RATE: f64 = 10_000_000.0;
/// The shortest histogram interval.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest `cluster.node_timeout`, client `timeout` and backoffs: a failover, a request
/// or a wait longer than this is not one an application lives with, and the policy's worst
/// op time (which sizes the open loop) stays within hours.
const MAX_POLICY_DURATION: Duration = Duration::from_secs(600);
/// "10m", for messages.
const MAX_POLICY_TEXT: &str = "10m";

/// Directives the node's command line sets: the ones with a field of their own, and the ones
/// slotstorm needs as they are.
const MANAGED_DIRECTIVES: [(&str, &str); 9] = [
    ("cluster-node-timeout", "set it with `cluster.node_timeout`"),
    ("appendonly", "set it with `cluster.appendonly`"),
    ("cluster-require-full-coverage", "set it with `cluster.require_full_coverage`"),
    ("port", "slotstorm sets it"),
    ("bind", "slotstorm sets it"),
    ("protected-mode", "slotstorm sets it"),
    ("cluster-enabled", "slotstorm sets it"),
    ("cluster-config-file", "slotstorm sets it"),
    ("dir", "slotstorm sets it"),
];

/// Parse and resolve `text`, read from `path`.
pub(super) fn workload(path: &Path, text: &str) -> Result<Workload, SpecError> {
    let src = Source { path, text };
    let de = toml::Deserializer::parse(text).map_err(|e| src.syntax(&e))?;
    let raw: RawWorkload = serde_path_to_error::deserialize(de).map_err(|e| src.deserialize(e))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Resolver { src, dir }.workload(raw)
}

/// Stage 2's context: the file, for placing errors, and its folder, for relative paths.
struct Resolver<'a> {
    src: Source<'a>,
    dir: &'a Path,
}

impl Resolver<'_> {
    fn err(&self, span: Range<usize>, field: impl fmt::Display, message: impl fmt::Display) -> SpecError {
        self.src.error(span, field, message)
    }

    /// The 1-based line of a span, for messages that point at a second place.
    fn line(&self, span: Range<usize>) -> usize {
        line_column(self.src.text, span.start).0
    }

    /// `v` when it lies in `lo..=hi`.
    fn ranged(&self, v: &Spanned<u64>, field: &str, lo: u64, hi: u64) -> Result<u64, SpecError> {
        let n = *v.get_ref();
        if (lo..=hi).contains(&n) {
            return Ok(n);
        }
        // Limits far above any sensible value are there to stop typos, not to advertise.
        let message = match (n < lo, hi >= 1_000_000) {
            (true, true) => format!("must be at least {lo}"),
            (false, true) => format!("must be at most {hi}"),
            (_, false) => format!("must be between {lo} and {hi}"),
        };
        Err(self.err(v.span(), field, message))
    }

    /// A policy duration (node timeout, client timeout, backoffs) in `lo..=10m`.
    fn duration_in(
        &self,
        v: &Spanned<RawDuration>,
        field: &str,
        lo: Duration,
        lo_text: &str,
    ) -> Result<Duration, SpecError> {
        let d = v.get_ref().0;
        if d < lo {
            return Err(self.err(v.span(), field, format_args!("must be at least {lo_text}")));
        }
        if d > MAX_POLICY_DURATION {
            let message = format!(
                "must be at most {MAX_POLICY_TEXT}: {} is longer than any {} an application lives with",
                humantime::format_duration(d),
                if field == "cluster.node_timeout" { "failure detection" } else { "request or wait" }
            );
            return Err(self.err(v.span(), field, message));
        }
        Ok(d)
    }

    fn workload(&self, raw: RawWorkload) -> Result<Workload, SpecError> {
        let name = match raw.name {
            Some(name) if valid_run_name(name.get_ref()) => name.into_inner(),
            Some(name) => return Err(self.err(name.span(), "name", RUN_NAME_RULE)),
            None => {
                let stem = self.src.path.file_stem().map(|s| s.to_string_lossy().into_owned());
                match stem {
                    Some(stem) if valid_run_name(&stem) => stem,
                    _ => {
                        let message =
                            format!("the file name cannot name the run; set `name`: {RUN_NAME_RULE}");
                        return Err(self.err(0..0, "name", message));
                    }
                }
            }
        };
        let chaos = match raw.chaos {
            Some(rel) => {
                let path = self.dir.join(rel.get_ref());
                if !path.is_file() {
                    let message = format!(
                        "no file at {}; the path is relative to the workload file's folder",
                        path.display()
                    );
                    return Err(self.err(rel.span(), "chaos", message));
                }
                // Errors inside the chaos file name that file and their place in it; only
                // one that keeps it from being read is the workload's.
                let plan = super::chaos::load_chaos(&path).map_err(|e| match e {
                    SpecError::Read { source, .. } => {
                        let message = format!("cannot read {}: {source}", path.display());
                        self.err(rel.span(), "chaos", message)
                    }
                    invalid @ SpecError::Invalid { .. } => invalid,
                })?;
                Some((plan, rel.span()))
            }
            None => None,
        };
        let cluster = match raw.cluster {
            Some(cluster) => self.cluster(cluster)?,
            None => ClusterTarget::Embedded(EmbeddedSpec::default()),
        };
        let concurrency = raw.load.get_ref().concurrency.as_ref().map(|c| (*c.get_ref(), c.span()));
        let load = self.load(raw.load)?;
        if let Some((plan, span)) = &chaos {
            self.chaos_fits(plan, span, &load, &cluster)?;
        }
        let chaos = chaos.map(|(plan, _)| plan);
        let client = self.client(raw.client.unwrap_or_default(), &load, concurrency)?;
        let keys = match raw.keys {
            Some(keys) => self.keys(keys.into_inner())?,
            None => Keys {
                count: DEFAULT_KEY_COUNT,
                distribution: Distribution::Uniform,
                value_size: ValueSize { min: DEFAULT_VALUE_SIZE as usize, max: DEFAULT_VALUE_SIZE as usize },
            },
        };
        let ops = self.ops(raw.op, keys.value_size.max)?;
        let slo = self.slo(raw.slo.unwrap_or_default(), &ops)?;
        Ok(Workload {
            name,
            path: self.src.path.to_path_buf(),
            description: raw.description,
            chaos,
            cluster,
            load,
            client,
            keys,
            ops,
            slo,
        })
    }

    fn cluster(&self, raw: Spanned<RawCluster>) -> Result<ClusterTarget, SpecError> {
        let table = raw.span();
        let raw = raw.into_inner();
        let kind = raw.kind.as_ref().map_or(ClusterKind::Embedded, |k| *k.get_ref());
        // Fields of the other kind are errors rather than ignored: a file that sets
        // `masters` for an external cluster expects something slotstorm will not do.
        let embedded_only = [
            ("engine", raw.engine.as_ref().map(Spanned::span)),
            ("masters", raw.masters.as_ref().map(Spanned::span)),
            ("replicas", raw.replicas.as_ref().map(Spanned::span)),
            ("node_timeout", raw.node_timeout.as_ref().map(Spanned::span)),
            ("appendonly", raw.appendonly.as_ref().map(Spanned::span)),
            ("require_full_coverage", raw.require_full_coverage.as_ref().map(Spanned::span)),
            ("config", raw.config.as_ref().map(Spanned::span)),
        ];
        let external_only = [
            ("seeds", raw.seeds.as_ref().map(Spanned::span)),
            ("password", raw.password.as_ref().map(Spanned::span)),
        ];
        if kind == ClusterKind::External {
            if let Some((field, Some(span))) = embedded_only.into_iter().find(|(_, s)| s.is_some()) {
                let message =
                    "only for kind = \"embedded\": slotstorm does not shape an external cluster; remove it";
                return Err(self.err(span, format_args!("cluster.{field}"), message));
            }
            let Some(seeds) = raw.seeds else {
                let message = "required with kind = \"external\": the `host:port` of one or more nodes, e.g. seeds = [\"10.0.0.1:6379\"]";
                return Err(self.err(table, "cluster.seeds", message));
            };
            if seeds.get_ref().is_empty() {
                return Err(self.err(
                    seeds.span(),
                    "cluster.seeds",
                    "must name at least one node as `host:port`",
                ));
            }
            for (i, seed) in seeds.get_ref().iter().enumerate() {
                if !valid_seed(seed.get_ref()) {
                    let message = format!("{:?} is not `host:port` (e.g. \"10.0.0.1:6379\")", seed.get_ref());
                    return Err(self.err(seed.span(), format_args!("cluster.seeds[{i}]"), message));
                }
            }
            let seeds = seeds.into_inner().into_iter().map(Spanned::into_inner).collect();
            return Ok(ClusterTarget::External { seeds, password: raw.password.map(Spanned::into_inner) });
        }
        if let Some((field, Some(span))) = external_only.into_iter().find(|(_, s)| s.is_some()) {
            let message = "only for kind = \"external\": an embedded cluster is one slotstorm starts; remove it or set kind = \"external\"";
            return Err(self.err(span, format_args!("cluster.{field}"), message));
        }
        let mut spec = EmbeddedSpec::default();
        spec.engine = raw.engine.map_or(spec.engine, Spanned::into_inner);
        if let Some(masters) = &raw.masters {
            spec.layout.masters = self.ranged(masters, "cluster.masters", 1, 100)? as usize;
        }
        if let Some(replicas) = &raw.replicas {
            spec.layout.replicas = self.ranged(replicas, "cluster.replicas", 0, 5)? as usize;
        }
        if let Some(timeout) = raw.node_timeout {
            spec.node_timeout =
                self.duration_in(&timeout, "cluster.node_timeout", Duration::from_millis(100), "100ms")?;
        }
        spec.appendonly = raw.appendonly.map_or(spec.appendonly, Spanned::into_inner);
        spec.require_full_coverage =
            raw.require_full_coverage.map_or(spec.require_full_coverage, Spanned::into_inner);
        for (name, value) in raw.config.map(Spanned::into_inner).unwrap_or_default() {
            // serde keeps no span for a map's keys, so these errors point at the value.
            let field = format!("cluster.config.{name}");
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                let message = "must be a redis.conf directive: lowercase letters, digits and `-`";
                return Err(self.err(value.span(), field, message));
            }
            if let Some((_, instead)) = MANAGED_DIRECTIVES.iter().find(|(d, _)| *d == name) {
                return Err(self.err(value.span(), field, format_args!("cannot be set here; {instead}")));
            }
            // Redis reads its command line as config text: a newline in a value would start
            // a directive of its own.
            if value.get_ref().chars().any(char::is_control) {
                let message = "must be one line without control characters (a newline would start another directive); several arguments go in one string, e.g. save = \"900 1\"";
                return Err(self.err(value.span(), field, message));
            }
            spec.extra.push((name, value.into_inner()));
        }
        Ok(ClusterTarget::Embedded(spec))
    }

    /// Refuse a chaos file whose fault or operation would start after the run has ended, or
    /// whose fault names a node the embedded cluster can never have (more than its layout
    /// plus one per `add-node`): it would never happen, and a run that skips it would pass
    /// what it never tested.
    fn chaos_fits(
        &self,
        plan: &ChaosPlan,
        span: &Range<usize>,
        load: &Load,
        cluster: &ClusterTarget,
    ) -> Result<(), SpecError> {
        // What is wrong here is the chaos file's: placed there, at the field at fault.
        let chaos = Source { path: &plan.path, text: &plan.text };
        let place_err = |place: &Place, field: &str, message: String| {
            chaos.error(place.span_of(field), format_args!("{}.{field}", place.table), message)
        };
        match cluster {
            ClusterTarget::Embedded(spec) => {
                let added = plan.operations.iter().filter(|o| o.operation.name() == "add-node").count();
                let most = spec.layout.masters * (1 + spec.layout.replicas) + added;
                let beyond =
                    |name: &str| name.trim_start_matches("redis-").parse().unwrap_or(usize::MAX) > most;
                let node = |t: &TargetSpec| match t {
                    TargetSpec::Node(name) if beyond(name) => Some(name.clone()),
                    _ => None,
                };
                let faults = plan.faults.iter().map(|f| (&f.place, "target", node(&f.target)));
                let operations = plan.operations.iter().map(|o| {
                    let (field, named) = match &o.operation {
                        Operation::AddNode { role: NewNodeRole::Replica { of } } => ("replica-of", node(of)),
                        Operation::Failover { target, .. } => ("target", node(target)),
                        Operation::Reshard { from, to, .. } => match node(from) {
                            Some(n) => ("from", Some(n)),
                            None => ("to", node(to)),
                        },
                        Operation::RemoveNode { target: NodeRef::Name(name), .. } if beyond(name) => {
                            ("target", Some(name.clone()))
                        }
                        _ => ("target", None),
                    };
                    (&o.place, field, named)
                });
                if let Some(v) = plan.needs_valkey()
                    && spec.engine != Engine::Valkey
                {
                    let message = format!(
                        "{}; this cluster runs {}: set engine = \"valkey\" in the workload's [cluster]",
                        v.needs, spec.engine
                    );
                    return Err(place_err(v.place, v.field, message));
                }
                if let Some((place, field, Some(name))) =
                    faults.chain(operations).find(|(_, _, n)| n.is_some())
                {
                    let message = format!(
                        "no node {name}: the cluster has redis-1 to redis-{most}{}",
                        if added > 0 { format!(" (counting {added} add-node)") } else { String::new() }
                    );
                    return Err(place_err(place, field, message));
                }
                // Without replicas (and no add-node of one) nothing can take a replica's
                // part: the fault or operation would fail when it is due.
                let replica_added = plan
                    .operations
                    .iter()
                    .any(|o| matches!(o.operation, Operation::AddNode { role: NewNodeRole::Replica { .. } }));
                if spec.layout.replicas == 0 && !replica_added {
                    let needs_replica = |t: &TargetSpec| {
                        matches!(t, TargetSpec::RandomReplica | TargetSpec::ReplicaOf { .. })
                    };
                    let faults = plan
                        .faults
                        .iter()
                        .filter(|f| needs_replica(&f.target))
                        .map(|f| (&f.place, "a fault on a replica"));
                    let failovers = plan
                        .operations
                        .iter()
                        .filter(|o| matches!(o.operation, Operation::Failover { .. }))
                        .map(|o| (&o.place, "a planned failover (a replica takes over)"));
                    if let Some((place, what)) = faults.chain(failovers).next() {
                        let message = format!(
                            "{what} needs a replica, but the cluster has none (cluster.replicas = 0): set replicas = 1 or add one with an add-node of role = \"replica\""
                        );
                        return Err(place_err(place, "target", message));
                    }
                }
            }
            ClusterTarget::External { .. } => {
                let message = "chaos needs an embedded cluster (slotstorm breaks containers it started); remove `chaos` or drive an embedded cluster";
                return Err(self.err(span.clone(), "chaos", message));
            }
        }
        let length = load.warmup + load.duration;
        let run = || {
            format!(
                "warm-up {} + duration {} = {}",
                humantime::format_duration(load.warmup),
                humantime::format_duration(load.duration),
                humantime::format_duration(length)
            )
        };
        let faults = plan.faults.iter().map(|f| (&f.place, f.action.name(), f.at, f.every, f.count));
        let operations = plan.operations.iter().map(|o| (&o.place, o.operation.name(), o.at, None, 1));
        for (place, action, at, every, count) in faults.chain(operations) {
            if at >= length {
                let message = format!(
                    "{action} at {} would start after the run ends ({}): lengthen the load or move it earlier",
                    humantime::format_duration(at),
                    run()
                );
                return Err(place_err(place, "at", message));
            }
            // Repeats too: every occurrence is one the run should see.
            if let Some(every) = every {
                let last = at.saturating_add(every.saturating_mul(count.saturating_sub(1)));
                if last >= length {
                    let message = format!(
                        "its last repeat ({count} every {} from {}) would start at {}, after the run ends ({}): lower `count` or lengthen the load",
                        humantime::format_duration(every),
                        humantime::format_duration(at),
                        humantime::format_duration(last),
                        run()
                    );
                    return Err(place_err(place, "count", message));
                }
            }
        }
        Ok(())
    }

    fn load(&self, raw: Spanned<RawLoad>) -> Result<Load, SpecError> {
        let raw = raw.into_inner();
        let duration = raw.duration.get_ref().0;
        if duration < MIN_INTERVAL {
            return Err(self.err(
                raw.duration.span(),
                "load.duration",
                "must be at least 100ms (one histogram interval), e.g. \"30s\"",
            ));
        }
        let mode = raw.mode.as_ref().map_or(Mode::Closed, |m| *m.get_ref());
        let pacing = match (mode, raw.rate) {
            (Mode::Open, Some(rate)) => {
                let r = *rate.get_ref();
                if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) {
                    return Err(self.err(
                        rate.span(),
                        "load.rate",
                        format_args!("must be a number of ops per second above 0 and at most {MAX_RATE:.0}"),
                    ));
                }
                if r * duration.as_secs_f64() < 1.0 {
                    let message = format!(
                        "{r} ops/s for {} sends no op at all: raise the rate or lengthen `duration`",
                        humantime::format_duration(duration)
                    );
                    return Err(self.err(rate.span(), "load.rate", message));
                }
                Pacing::Open { rate: r }
            }
            (Mode::Open, None) => {
                let span = raw.mode.as_ref().map_or(0..0, Spanned::span);
                let message = "required with mode = \"open\": the ops started per second, e.g. rate = 5000";
                return Err(self.err(span, "load.rate", message));
            }
            (Mode::Closed, Some(rate)) => {
                let message = "only for mode = \"open\": a closed loop starts each op when the last one finished (mode is \"closed\" unless set); remove it or set mode = \"open\"";
                return Err(self.err(rate.span(), "load.rate", message));
            }
            (Mode::Closed, None) => Pacing::Closed,
        };
        let concurrency = match (&raw.concurrency, pacing) {
            (Some(c), _) => Some(self.ranged(c, "load.concurrency", 1, 100_000)? as usize),
            (None, Pacing::Closed) => Some(DEFAULT_CONCURRENCY as usize),
            (None, Pacing::Open { .. }) => None,
        };
        let connections = match &raw.connections {
            Some(c) => self.ranged(c, "load.connections", 1, 64)?,
            None => 1,
        };
        let interval = match raw.interval {
            Some(i) if i.get_ref().0 < MIN_INTERVAL => {
                return Err(self.err(i.span(), "load.interval", "must be at least 100ms"));
            }
            Some(i) => i.get_ref().0,
            None => Duration::from_secs(1),
        };
        Ok(Load {
            duration,
            warmup: raw.warmup.map_or(Duration::ZERO, |w| w.get_ref().0),
            pacing,
            concurrency,
            connections: connections as usize,
            seed: raw.seed.unwrap_or(0),
            interval,
        })
    }

    fn client(
        &self,
        raw: RawClient,
        load: &Load,
        concurrency: Option<(u64, Range<usize>)>,
    ) -> Result<ClientPolicy, SpecError> {
        let mut policy = ClientPolicy::default();
        if let Some(library) = &raw.library {
            policy.library = *library.get_ref();
            policy.retries = policy.library.default_retries();
            self.library_fits(&raw, concurrency, policy.library)?;
        }
        if let Some(instances) = &raw.instances {
            if policy.library == ClientLibrary::Slotstorm {
                let message = "only with a real `client.library`: slotstorm's own client shares its connections between its workers";
                return Err(self.err(instances.span(), "client.instances", message));
            }
            policy.instances = *instances.get_ref();
        }
        if let Some(pool) = &raw.pool {
            let n = self.ranged(pool, "client.pool", 1, MAX_IN_FLIGHT as u64)?;
            match load.pacing {
                Pacing::Closed => {
                    let message = "only for mode = \"open\": in a closed loop `load.concurrency` is the number of ops in flight, which is the pool";
                    return Err(self.err(pool.span(), "client.pool", message));
                }
                Pacing::Open { .. } if load.concurrency.is_some() => {
                    let message = "set either `client.pool` (the application's pool, whose queueing is reported apart) or `load.concurrency` (slotstorm's own limit on ops in flight), not both";
                    return Err(self.err(pool.span(), "client.pool", message));
                }
                Pacing::Open { .. } => policy.pool = Some(n as usize),
            }
        }
        if let Some(timeout) = raw.timeout {
            policy.timeout = self.duration_in(&timeout, "client.timeout", Duration::from_micros(1), "1us")?;
        }
        if let Some(retries) = raw.retries {
            if *retries.get_ref() > 100 {
                return Err(self.err(retries.span(), "client.retries", "must be between 0 and 100"));
            }
            policy.retries = retries.into_inner();
        }
        if let Some(backoff) = raw.backoff {
            policy.backoff = self.duration_in(&backoff, "client.backoff", Duration::ZERO, "0s")?;
        }
        if let Some(max) = raw.backoff_max {
            if max.get_ref().0 < policy.backoff {
                let message =
                    format!("must be at least `backoff` ({})", humantime::format_duration(policy.backoff));
                return Err(self.err(max.span(), "client.backoff_max", message));
            }
            policy.backoff_max = self.duration_in(&max, "client.backoff_max", Duration::ZERO, "0s")?;
        }
        // A backoff above the default maximum, with no maximum given, raises the maximum
        // rather than being cut to it.
        policy.backoff_max = policy.backoff_max.max(policy.backoff);
        Ok(policy)
    }

    /// What a real client library cannot be told: redis-py's `RedisCluster` has no backoff
    /// setting, and sends from one thread per op in flight.
    fn library_fits(
        &self,
        raw: &RawClient,
        concurrency: Option<(u64, Range<usize>)>,
        library: ClientLibrary,
    ) -> Result<(), SpecError> {
        if library == ClientLibrary::Slotstorm {
            return Ok(());
        }
        let no_backoff = "redis-py's RedisCluster has no backoff setting: it retries timeouts and connection errors at once and waits 250 ms after CLUSTERDOWN (leave it out)";
        if let Some(b) = &raw.backoff {
            return Err(self.err(b.span(), "client.backoff", no_backoff));
        }
        if let Some(b) = &raw.backoff_max {
            return Err(self.err(b.span(), "client.backoff_max", no_backoff));
        }
        let threads = |n: u64, span, field: &str| {
            if n as usize > ClientLibrary::MAX_THREADS {
                let message = format!(
                    "{} sends from a thread per op in flight: at most {} with client.library = \"{}\"",
                    library.name(),
                    ClientLibrary::MAX_THREADS,
                    library.name()
                );
                return Err(self.err(span, field, message));
            }
            Ok(())
        };
        if let Some(pool) = &raw.pool {
            threads(*pool.get_ref(), pool.span(), "client.pool")?;
        }
        if let Some((n, span)) = concurrency {
            threads(n, span, "load.concurrency")?;
        }
        Ok(())
    }

    fn keys(&self, raw: RawKeys) -> Result<Keys, SpecError> {
        let count = match &raw.count {
            Some(c) => self.ranged(c, "keys.count", 1, MAX_KEY_COUNT)?,
            None => DEFAULT_KEY_COUNT,
        };
        let kind = raw.distribution.as_ref().map_or(DistributionKind::Uniform, |d| *d.get_ref());
        let distribution = match (kind, raw.theta) {
            (DistributionKind::Zipfian, theta) => {
                let t = theta.as_ref().map_or(DEFAULT_THETA, |t| *t.get_ref());
                if !(t > 0.0 && t < 1.0) {
                    let span = theta.map_or(0..0, |t| t.span());
                    let message = "must lie between 0 and 1, both excluded (0.99 is YCSB's skew)";
                    return Err(self.err(span, "keys.theta", message));
                }
                Distribution::Zipfian { theta: t }
            }
            (_, Some(theta)) => {
                let message =
                    "only for distribution = \"zipfian\"; remove it or set distribution = \"zipfian\"";
                return Err(self.err(theta.span(), "keys.theta", message));
            }
            (DistributionKind::Uniform, None) => Distribution::Uniform,
            (DistributionKind::Sequential, None) => Distribution::Sequential,
        };
        let value_size = match raw.value_size {
            None => ValueSize { min: DEFAULT_VALUE_SIZE as usize, max: DEFAULT_VALUE_SIZE as usize },
            Some(size) => {
                let span = size.span();
                match size.into_inner() {
                    RawValueSize::Fixed(n) => {
                        let n = self.ranged(&Spanned::new(span, n), "keys.value_size", 1, MAX_VALUE_SIZE)?;
                        ValueSize { min: n as usize, max: n as usize }
                    }
                    RawValueSize::Range { min, max } => {
                        let lo = self.ranged(&min, "keys.value_size.min", 1, MAX_VALUE_SIZE)?;
                        let hi = self.ranged(&max, "keys.value_size.max", 0, MAX_VALUE_SIZE)?;
                        if hi < lo {
                            let message = format!("must be at least `min` ({lo})");
                            return Err(self.err(max.span(), "keys.value_size.max", message));
                        }
                        ValueSize { min: lo as usize, max: hi as usize }
                    }
                }
            }
        };
        Ok(Keys { count, distribution, value_size })
    }
}

/// What a run name may be, for messages.
const RUN_NAME_RULE: &str = "a run name is 1 to 100 of letters, digits, `_`, `-` and `.`, not starting with `.` (it names the results folder)";

/// A name that is safe as a folder name everywhere.
fn valid_run_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `host:port` with a port number (the host is resolved when the run starts).
fn valid_seed(seed: &str) -> bool {
    match seed.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}
