//! The matrix of a comparison: axes of settings (the engine, `cluster-node-timeout`, a
//! redis.conf directive, the client's request timeout or retries), their cartesian product as cells,
//! and how a cell's settings change a workload. Pure: parsing and applying, no I/O.

use std::time::Duration;

use crate::backend::engine::Engine;
use crate::spec::{ClusterTarget, Workload};

/// One value on one axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// The server the nodes run.
    Engine(Engine),
    /// `cluster-node-timeout`.
    NodeTimeout(Duration),
    /// Any other redis.conf directive, `name value`.
    Redis(String, String),
    /// The client's per-request timeout.
    RequestTimeout(Duration),
    /// The client's retries after the first attempt.
    Retries(u32),
}

impl Setting {
    /// The axis it belongs to (`cluster-node-timeout`, `appendonly`, `request-timeout`,
    /// `retries`).
    pub fn axis(&self) -> String {
        match self {
            Setting::Engine(_) => "engine".into(),
            Setting::NodeTimeout(_) => "cluster-node-timeout".into(),
            Setting::Redis(name, _) => name.clone(),
            Setting::RequestTimeout(_) => "request-timeout".into(),
            Setting::Retries(_) => "retries".into(),
        }
    }

    /// The value, for labels (`1000ms`, `yes`, `2`).
    pub fn value(&self) -> String {
        match self {
            Setting::Engine(e) => e.name().into(),
            Setting::NodeTimeout(d) | Setting::RequestTimeout(d) => format!("{}ms", d.as_millis()),
            Setting::Redis(_, v) => v.clone(),
            Setting::Retries(n) => n.to_string(),
        }
    }

    /// Change `w` to use this setting. The workload's cluster must be embedded (checked
    /// by [`check_workload`]); an external one is left alone.
    pub fn apply(&self, w: &mut Workload) {
        match self {
            Setting::RequestTimeout(d) => w.client.timeout = *d,
            Setting::Retries(n) => w.client.retries = *n,
            Setting::Engine(e) => {
                if let ClusterTarget::Embedded(spec) = &mut w.cluster {
                    spec.engine = *e;
                }
            }
            Setting::NodeTimeout(d) => {
                if let ClusterTarget::Embedded(spec) = &mut w.cluster {
                    spec.node_timeout = *d;
                }
            }
            Setting::Redis(name, value) => {
                let ClusterTarget::Embedded(spec) = &mut w.cluster else { return };
                match name.as_str() {
                    "appendonly" => spec.appendonly = value == "yes",
                    "cluster-require-full-coverage" => spec.require_full_coverage = value == "yes",
                    _ => {
                        spec.extra.retain(|(k, _)| k != name);
                        spec.extra.push((name.clone(), value.clone()));
                    }
                }
            }
        }
    }
}

/// One axis: a setting and the values it takes, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    /// The values; never empty, all of one axis, none repeated.
    pub values: Vec<Setting>,
}

impl Axis {
    /// Its name (the axis of its values).
    pub fn name(&self) -> String {
        self.values.first().map(Setting::axis).unwrap_or_default()
    }

    /// The axis of engines, from `redis,valkey`.
    ///
    /// # Errors
    /// What is wrong with which value.
    pub fn engines(text: &str) -> Result<Axis, String> {
        Axis::list("--engine", text, |v| {
            Engine::ALL
                .into_iter()
                .find(|e| e.name() == v)
                .map(Setting::Engine)
                .ok_or_else(|| format!("{v:?} is not an engine (redis or valkey)"))
        })
    }

    /// The axis of `cluster-node-timeout` values, from `1000,2000` (bare numbers are
    /// milliseconds, as in redis.conf) or `1s,2500ms`.
    ///
    /// # Errors
    /// What is wrong with which value.
    pub fn node_timeouts(text: &str) -> Result<Axis, String> {
        Axis::list("--node-timeout", text, |v| parse_ms(v).map(Setting::NodeTimeout))
    }

    /// The axis of request timeouts (`500ms,1s`; bare numbers are milliseconds).
    ///
    /// # Errors
    /// What is wrong with which value.
    pub fn request_timeouts(text: &str) -> Result<Axis, String> {
        Axis::list("--request-timeout", text, |v| parse_ms(v).map(Setting::RequestTimeout))
    }

    /// The axis of retry counts (`0,2`).
    ///
    /// # Errors
    /// What is wrong with which value.
    pub fn retries(text: &str) -> Result<Axis, String> {
        Axis::list("--retries", text, |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| *n <= 20)
                .map(Setting::Retries)
                .ok_or_else(|| format!("{v:?} is not a retry count (0 to 20)"))
        })
    }

    /// The axis of a redis.conf directive, from `name=v1,v2`.
    ///
    /// # Errors
    /// What is wrong with the name or which value.
    pub fn redis(text: &str) -> Result<Axis, String> {
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| format!("--config: expected name=value1,value2, got {text:?}"))?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("--config: {name:?} is not a redis.conf directive name"));
        }
        if name == "cluster-node-timeout" {
            return Axis::node_timeouts(values);
        }
        let flag = format!("--config {name}");
        Axis::list(&flag, values, |v| {
            let boolean = matches!(name, "appendonly" | "cluster-require-full-coverage");
            if boolean && !matches!(v, "yes" | "no") {
                return Err(format!("{name} takes yes or no, not {v:?}"));
            }
            Ok(Setting::Redis(name.to_string(), v.to_string()))
        })
    }

    fn list(flag: &str, text: &str, parse: impl Fn(&str) -> Result<Setting, String>) -> Result<Axis, String> {
        let mut values = Vec::new();
        for v in text.split(',').map(str::trim) {
            if v.is_empty() {
                return Err(format!("{flag}: an empty value in {text:?}"));
            }
            let s = parse(v).map_err(|e| format!("{flag}: {e}"))?;
            if values.contains(&s) {
                return Err(format!("{flag}: {v} is listed twice"));
            }
            values.push(s);
        }
        Ok(Axis { values })
    }
}

/// A duration in milliseconds (`1000`) or with a unit (`1s`, `250ms`); more than zero.
fn parse_ms(v: &str) -> Result<Duration, String> {
    let d = match v.parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => humantime::parse_duration(v).map_err(|e| format!("{v:?} is not a duration ({e})"))?,
    };
    if d.is_zero() {
        return Err(format!("{v:?} must be more than zero"));
    }
    Ok(d)
}

/// One combination of settings: a value of every axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The settings, one per axis, in axis order.
    pub settings: Vec<Setting>,
}

impl Cell {
    /// The full label: `cluster-node-timeout=1000ms retries=2` (or `as written` without axes).
    pub fn label(&self) -> String {
        if self.settings.is_empty() {
            return "as written".into();
        }
        self.settings.iter().map(|s| format!("{}={}", s.axis(), s.value())).collect::<Vec<_>>().join(" ")
    }

    /// The short label for plot axes: the values alone (`1000ms / 2`).
    pub fn short(&self) -> String {
        if self.settings.is_empty() {
            return "as written".into();
        }
        self.settings.iter().map(Setting::value).collect::<Vec<_>>().join(" / ")
    }

    /// A folder-name-safe form of the label (`cluster-node-timeout-1000ms_retries-2`).
    pub fn slug(&self) -> String {
        let s: String = self
            .label()
            .chars()
            .map(|c| match c {
                ' ' => '_',
                '=' => '-',
                c if c.is_ascii_alphanumeric() || c == '-' || c == '.' => c,
                _ => '-',
            })
            .collect();
        s.chars().take(80).collect()
    }

    /// `w` with this cell's settings.
    pub fn apply(&self, w: &Workload) -> Workload {
        let mut w = w.clone();
        for s in &self.settings {
            s.apply(&mut w);
        }
        w
    }
}

/// Every combination of the axes' values, the first axis varying slowest. Axes of the same
/// name are a mistake the caller reports ([`duplicate_axis`]).
pub fn cells(axes: &[Axis]) -> Vec<Cell> {
    let mut out = vec![Cell { settings: Vec::new() }];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|c| {
                axis.values.iter().map(move |v| {
                    let mut settings = c.settings.clone();
                    settings.push(v.clone());
                    Cell { settings }
                })
            })
            .collect();
    }
    out
}

/// The name of an axis given twice, if one is.
pub fn duplicate_axis(axes: &[Axis]) -> Option<String> {
    let names: Vec<String> = axes.iter().map(Axis::name).collect();
    names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n.clone())
}

/// The names of the axes, joined for a plot's x axis (`cluster-node-timeout / retries`).
pub fn axes_title(axes: &[Axis]) -> String {
    if axes.is_empty() {
        return "setting".into();
    }
    axes.iter().map(Axis::name).collect::<Vec<_>>().join(" / ")
}

/// Why `w` cannot be compared: an external cluster (each cell needs a fresh one) or no
/// chaos file (nothing to fail over).
pub fn check_workload(w: &Workload) -> Result<(), String> {
    if matches!(w.cluster, ClusterTarget::External { .. }) {
        return Err(format!(
            "{}: compare needs an embedded cluster (each cell runs on a fresh one); remove the external [cluster]",
            w.path.display()
        ));
    }
    if w.chaos.is_none() {
        return Err(format!(
            "{}: compare needs faults to compare: set `chaos` in the workload or pass --chaos FILE",
            w.path.display()
        ));
    }
    Ok(())
}

/// Refuse an engine axis with a Redis cell when the chaos file needs Valkey (an atomic
/// reshard, `shutdown-failover`): that cell's runs could only fail. The workload's own engine
/// was checked when it was loaded.
///
/// # Errors
/// A line naming the table that needs Valkey.
pub fn check_engines(w: &Workload, axes: &[Axis]) -> Result<(), String> {
    let redis_cell = axes.iter().flat_map(|a| &a.values).any(|s| *s == Setting::Engine(Engine::Redis));
    let Some(chaos) = w.chaos.as_ref().filter(|_| redis_cell) else { return Ok(()) };
    match chaos.needs_valkey() {
        Some(v) => Err(format!(
            "--engine: {} needs Valkey ({} is {}), so a redis cell could only fail; compare --engine valkey alone, or use a chaos file both engines run",
            chaos.path.display(),
            v.place.table,
            v.what
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_timeouts_take_bare_milliseconds_and_units() {
        let a = Axis::node_timeouts("1000, 2s,250ms").unwrap();
        let ms: Vec<u128> = a
            .values
            .iter()
            .map(|s| match s {
                Setting::NodeTimeout(d) => d.as_millis(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ms, [1000, 2000, 250]);
        assert_eq!(a.name(), "cluster-node-timeout");
    }

    #[test]
    fn engines_are_an_axis_that_sets_the_clusters_engine() {
        let a = Axis::engines("redis, valkey").unwrap();
        assert_eq!(a.values, [Setting::Engine(Engine::Redis), Setting::Engine(Engine::Valkey)]);
        assert_eq!((a.name(), a.values[1].value()), ("engine".to_string(), "valkey".to_string()));
        assert_eq!(
            Axis::engines("redis,keydb").unwrap_err(),
            "--engine: \"keydb\" is not an engine (redis or valkey)"
        );
        assert_eq!(Axis::engines("valkey,valkey").unwrap_err(), "--engine: valkey is listed twice");
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(
            Axis::node_timeouts("1000,,2000").unwrap_err(),
            "--node-timeout: an empty value in \"1000,,2000\""
        );
        assert_eq!(Axis::node_timeouts("0").unwrap_err(), "--node-timeout: \"0\" must be more than zero");
        assert_eq!(Axis::node_timeouts("1000,1s").unwrap_err(), "--node-timeout: 1s is listed twice");
        assert!(
            Axis::node_timeouts("fast")
                .unwrap_err()
                .starts_with("--node-timeout: \"fast\" is not a duration")
        );
        assert_eq!(Axis::retries("-1").unwrap_err(), "--retries: \"-1\" is not a retry count (0 to 20)");
        assert_eq!(
            Axis::redis("appendonly=maybe").unwrap_err(),
            "--config appendonly: appendonly takes yes or no, not \"maybe\""
        );
        assert!(Axis::redis("appendonly").unwrap_err().contains("expected name=value1,value2"));
    }

    #[test]
    fn a_node_timeout_given_as_config_is_the_node_timeout_axis() {
        assert_eq!(
            Axis::redis("cluster-node-timeout=500,1000").unwrap(),
            Axis::node_timeouts("500,1000").unwrap()
        );
    }

    #[test]
    fn cells_are_the_product_with_the_first_axis_slowest() {
        let axes = [Axis::node_timeouts("1000,2000").unwrap(), Axis::retries("0,1,2").unwrap()];
        let cells = cells(&axes);
        assert_eq!(cells.len(), 6);
        assert_eq!(cells[0].label(), "cluster-node-timeout=1000ms retries=0");
        assert_eq!(cells[1].label(), "cluster-node-timeout=1000ms retries=1");
        assert_eq!(cells[5].short(), "2000ms / 2");
        assert_eq!(cells[5].slug(), "cluster-node-timeout-2000ms_retries-2");
        assert_eq!(super::cells(&[]), vec![Cell { settings: vec![] }]);
        assert_eq!(duplicate_axis(&axes), None);
        let twice = [Axis::retries("1").unwrap(), Axis::retries("2").unwrap()];
        assert_eq!(duplicate_axis(&twice).as_deref(), Some("retries"));
    }

    #[test]
    fn settings_change_the_workload() {
        let shipped = |name: &str| {
            crate::spec::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads").join(name))
                .unwrap()
        };
        let w = shipped("kill-primary.toml");
        let cell = Cell {
            settings: vec![
                Setting::NodeTimeout(Duration::from_millis(1500)),
                Setting::Redis("appendonly".into(), "no".into()),
                Setting::Redis("maxmemory".into(), "100mb".into()),
                Setting::RequestTimeout(Duration::from_millis(300)),
                Setting::Retries(3),
            ],
        };
        let changed = cell.apply(&w);
        let ClusterTarget::Embedded(spec) = &changed.cluster else { panic!("embedded") };
        assert_eq!(spec.node_timeout, Duration::from_millis(1500));
        assert!(!spec.appendonly);
        assert_eq!(spec.extra, vec![("maxmemory".to_string(), "100mb".to_string())]);
        assert_eq!(changed.client.timeout, Duration::from_millis(300));
        assert_eq!(changed.client.retries, 3);
        assert_eq!(check_workload(&w), Ok(()));
        let smoke = shipped("smoke.toml");
        assert!(check_workload(&smoke).unwrap_err().contains("compare needs faults to compare"));
        // The engine axis sets the engine, and a Redis cell is refused for a chaos file
        // only Valkey runs.
        let on_valkey = Cell { settings: vec![Setting::Engine(Engine::Valkey)] }.apply(&w);
        let ClusterTarget::Embedded(spec) = &on_valkey.cluster else { panic!("embedded") };
        assert_eq!(spec.engine, Engine::Valkey);
        let both = [Axis::engines("redis,valkey").unwrap()];
        assert_eq!(check_engines(&w, &both), Ok(()));
        let atomic = shipped("reshard-atomic.toml");
        let err = check_engines(&atomic, &both).unwrap_err();
        assert!(
            err.contains("reshard-atomic.toml needs Valkey (operation[0] is an atomic reshard)"),
            "{err}"
        );
        assert_eq!(check_engines(&atomic, &[Axis::engines("valkey").unwrap()]), Ok(()));
    }
}
