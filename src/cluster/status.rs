//! The `cluster status` table, rendered from a [`Survey`]: one row per node with its address,
//! role, primary, slots and links, under a one-line verdict on the whole cluster.

use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;

use super::topology::{NodeEntry, NodeId, View};
use super::{NodeReport, Survey};

/// Render `survey` as a table; `names` maps addresses to node names (empty for an external
/// cluster, where addresses stand in for names).
pub fn render(survey: &Survey, names: &HashMap<SocketAddr, String>) -> String {
    let view = &survey.seed_view;
    let name_of = |addr: &str| -> String {
        addr.parse::<SocketAddr>()
            .ok()
            .and_then(|a| names.get(&a).cloned())
            .unwrap_or_else(|| addr.to_string())
    };
    let by_id: HashMap<&NodeId, &NodeEntry> = view.nodes.iter().map(|n| (&n.id, n)).collect();
    let reports: HashMap<&str, &Result<NodeReport, super::ClusterError>> =
        survey.reports.iter().map(|(a, r)| (a.as_str(), r)).collect();

    let mut entries: Vec<&NodeEntry> = view.nodes.iter().collect();
    entries.sort_by_key(|n| (natural_key(&name_of(&n.addr)), n.addr.clone()));
    let header = ["NODE", "ADDRESS", "ROLE", "PRIMARY", "SLOTS", "STATE", "BUS", "REPLICATION"];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for n in entries {
        let report = reports.get(n.addr.as_str()).copied();
        let role = if n.is_primary() { "primary" } else { "replica" };
        let primary = n.primary.as_ref().map_or("-".to_string(), |p| {
            by_id.get(p).map_or(p.0[..8.min(p.0.len())].to_string(), |e| name_of(&e.addr))
        });
        let slots = if n.slots.is_empty() {
            "-".to_string()
        } else {
            let ranges: Vec<String> = n.slots.iter().map(ToString::to_string).collect();
            format!("{} ({})", ranges.join(","), n.slot_count())
        };
        let state = match report {
            Some(Ok(r)) => format!("cluster_state:{}", r.state()),
            Some(Err(_)) | None => "unreachable".to_string(),
        };
        let mut flags: Vec<&str> = n
            .flags
            .iter()
            .map(String::as_str)
            .filter(|f| !["myself", "master", "slave", "noflags"].contains(f))
            .collect();
        let bus = if n.connected { "connected" } else { "disconnected" };
        flags.insert(0, bus);
        let replication = match report {
            Some(Ok(r)) if !n.is_primary() => {
                format!("link {}", r.replication.get("master_link_status").map_or("?", String::as_str))
            }
            Some(Ok(r)) => {
                format!("{} replicas", r.replication.get("connected_slaves").map_or("?", String::as_str))
            }
            _ => "-".to_string(),
        };
        rows.push([
            name_of(&n.addr),
            n.addr.clone(),
            role.into(),
            primary,
            slots,
            state,
            flags.join(","),
            replication,
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "{}", verdict(view, survey));
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in &rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// One line on the whole cluster: slots covered, nodes answering, agreement.
fn verdict(view: &View, survey: &Survey) -> String {
    let answered: Vec<&NodeReport> = survey.reports.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let ok = answered.iter().filter(|r| r.state() == "ok").count();
    let shape = view.shape();
    let agree = answered.iter().all(|r| r.view.shape() == shape);
    format!(
        "{} of 16384 slots covered; {} nodes known, {} answered, {} report cluster_state:ok; views {}",
        view.covered_slots(),
        view.nodes.len(),
        answered.len(),
        ok,
        if agree { "agree" } else { "DISAGREE" }
    )
}

/// `redis-10` sorts after `redis-9`.
fn natural_key(name: &str) -> (String, u64) {
    let digits = name.chars().rev().take_while(char::is_ascii_digit).count();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_roles_primaries_and_slots_by_name() {
        let text = "\
a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 master,fail - 0 0 2 disconnected 8192-16383
c 10.0.0.3:6379@16379 slave a 0 0 1 connected
";
        let view = View::parse(text).unwrap();
        let report = NodeReport {
            addr: "10.0.0.1:6379".parse().unwrap(),
            view: view.clone(),
            cluster_info: HashMap::from([("cluster_state".into(), "ok".into())]),
            replication: HashMap::from([("connected_slaves".into(), "1".into())]),
        };
        let survey = Survey { seed_view: view, reports: vec![("10.0.0.1:6379".into(), Ok(report))] };
        let names = HashMap::from([
            ("10.0.0.1:6379".parse().unwrap(), "redis-1".to_string()),
            ("10.0.0.2:6379".parse().unwrap(), "redis-2".to_string()),
            ("10.0.0.3:6379".parse().unwrap(), "redis-10".to_string()),
        ]);
        let out = render(&survey, &names);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("16384 of 16384 slots covered; 3 nodes known, 1 answered"));
        assert!(lines[2].starts_with("redis-1 ") && lines[2].contains("0-8191 (8192)"));
        assert!(
            lines[3].starts_with("redis-2 ")
                && lines[3].contains("unreachable")
                && lines[3].contains("disconnected,fail")
        );
        assert!(
            lines[4].starts_with("redis-10") && lines[4].contains("replica") && lines[4].contains("redis-1 ")
        );
    }
}
