//! Resolving a fault's target against the cluster as it is when the fault starts.

use rand::Rng;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;

use crate::backend::docker::{DockerCluster, NodeContainer};
use crate::cluster::topology::View;
use crate::spec::chaos::TargetSpec;

/// The nodes a fault hits, and whether each was a primary then.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The nodes.
    pub nodes: Vec<NodeContainer>,
    /// Whether each was a primary when resolved.
    pub primaries: Vec<bool>,
    /// The slots they served when resolved.
    pub slots: Vec<(u16, u16)>,
}

/// Resolve `target` using the current view of any node that answers.
///
/// # Errors
/// A message when no node answers or the target names no node.
pub async fn resolve(
    target: &TargetSpec,
    cluster: &DockerCluster,
    rng: &mut SmallRng,
) -> Result<Resolved, String> {
    let survey = crate::cluster::survey(&cluster.addrs()).await.map_err(|e| e.to_string())?;
    resolve_in(target, cluster, &survey.seed_view, rng)
}

/// [`resolve`] on a given view (pure).
pub fn resolve_in(
    target: &TargetSpec,
    cluster: &DockerCluster,
    view: &View,
    rng: &mut SmallRng,
) -> Result<Resolved, String> {
    let name_of = |addr: &str| cluster.nodes.iter().find(|n| n.addr.to_string() == addr);
    let live_primaries: Vec<&NodeContainer> = view
        .nodes
        .iter()
        .filter(|n| n.is_primary() && !n.is_failed() && n.slot_count() > 0)
        .filter_map(|n| name_of(&n.addr))
        .collect();
    let replicas_of = |primary: Option<&str>| -> Vec<&NodeContainer> {
        view.nodes
            .iter()
            .filter(|n| !n.is_primary() && !n.is_failed())
            .filter(|n| {
                primary.is_none_or(|p| {
                    n.primary.as_ref().and_then(|id| view.node(id)).is_some_and(|m| m.addr == p)
                })
            })
            .filter_map(|n| name_of(&n.addr))
            .collect()
    };
    let chosen: Vec<&NodeContainer> = match target {
        TargetSpec::Node(name) => {
            vec![cluster.nodes.iter().find(|n| &n.node == name).ok_or_else(|| {
                let known: Vec<&str> = cluster.nodes.iter().map(|n| n.node.as_str()).collect();
                format!("no node named {name} (the cluster has {})", known.join(", "))
            })?]
        }
        TargetSpec::RandomPrimary => {
            vec![*live_primaries.choose(rng).ok_or("no live primary to choose from")?]
        }
        TargetSpec::RandomReplica => {
            vec![*replicas_of(None).choose(rng).ok_or("no live replica to choose from")?]
        }
        TargetSpec::AllPrimaries => live_primaries.clone(),
        TargetSpec::MinorityOfPrimaries => {
            let k = (live_primaries.len().saturating_sub(1) / 2).max(1);
            let mut pool = live_primaries.clone();
            let mut out = Vec::with_capacity(k);
            while out.len() < k && !pool.is_empty() {
                out.push(pool.swap_remove(rng.random_range(0..pool.len())));
            }
            out
        }
        TargetSpec::PrimaryOf { key, slot } => {
            let owner =
                view.owner_of(slot.get()).ok_or_else(|| format!("no node serves the slot of {key}"))?;
            vec![
                name_of(&owner.addr)
                    .ok_or_else(|| format!("the owner of {key} is not one of this run's nodes"))?,
            ]
        }
        TargetSpec::ReplicaOf { key, slot } => {
            let owner =
                view.owner_of(slot.get()).ok_or_else(|| format!("no node serves the slot of {key}"))?;
            vec![
                *replicas_of(Some(&owner.addr))
                    .choose(rng)
                    .ok_or_else(|| format!("the primary of {key} has no live replica"))?,
            ]
        }
    };
    if chosen.is_empty() {
        return Err(format!("target {target} matches no node now"));
    }
    let entry = |c: &NodeContainer| view.nodes.iter().find(|n| n.addr == c.addr.to_string());
    let primaries = chosen.iter().map(|c| entry(c).is_some_and(|n| n.is_primary())).collect();
    let slots = chosen
        .iter()
        .filter_map(|c| entry(c))
        .flat_map(|n| n.slots.iter().map(|r| (r.start, r.end)))
        .collect();
    Ok(Resolved { nodes: chosen.into_iter().cloned().collect(), primaries, slots })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::docker::RunId;
    use crate::cluster::slot::Slot;
    use rand::SeedableRng;

    fn cluster() -> DockerCluster {
        let nodes = (1..=6)
            .map(|i| NodeContainer {
                node: format!("redis-{i}"),
                container: format!("c-{i}"),
                addr: format!("10.0.0.{i}:6379").parse().unwrap(),
            })
            .collect();
        DockerCluster { run: RunId::new("t").unwrap(), nodes }
    }

    const VIEW: &str = "\
a 10.0.0.1:6379@16379 master - 0 0 1 connected 0-5460
b 10.0.0.2:6379@16379 master - 0 0 2 connected 5461-10922
c 10.0.0.3:6379@16379 myself,master - 0 0 3 connected 10923-16383
d 10.0.0.4:6379@16379 slave a 0 0 1 connected
e 10.0.0.5:6379@16379 slave b 0 0 2 connected
f 10.0.0.6:6379@16379 slave c 0 0 3 connected
";

    fn names(r: &Resolved) -> Vec<&str> {
        r.nodes.iter().map(|n| n.node.as_str()).collect()
    }

    #[test]
    fn keys_resolve_to_their_primary_and_its_replica() {
        let view = View::parse(VIEW).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let key = "{user:42}".to_string();
        let slot = Slot::of(key.as_bytes());
        let owner = view.owner_of(slot.get()).unwrap().addr.clone();
        let p = resolve_in(&TargetSpec::PrimaryOf { key: key.clone(), slot }, &cluster(), &view, &mut rng)
            .unwrap();
        assert_eq!(p.nodes[0].addr.to_string(), owner);
        assert_eq!(p.primaries, vec![true]);
        let r = resolve_in(&TargetSpec::ReplicaOf { key, slot }, &cluster(), &view, &mut rng).unwrap();
        let replica = view.nodes.iter().find(|n| n.addr == r.nodes[0].addr.to_string()).unwrap();
        assert_eq!(view.node(replica.primary.as_ref().unwrap()).unwrap().addr, owner);
        assert_eq!(r.primaries, vec![false]);
    }

    #[test]
    fn selectors_pick_from_the_live_topology() {
        let view = View::parse(VIEW).unwrap();
        let mut rng = SmallRng::seed_from_u64(1);
        let all = resolve_in(&TargetSpec::AllPrimaries, &cluster(), &view, &mut rng).unwrap();
        assert_eq!(names(&all), vec!["redis-1", "redis-2", "redis-3"]);
        let minority = resolve_in(&TargetSpec::MinorityOfPrimaries, &cluster(), &view, &mut rng).unwrap();
        assert_eq!(minority.nodes.len(), 1);
        assert!(minority.primaries[0]);
        let rp = resolve_in(&TargetSpec::RandomPrimary, &cluster(), &view, &mut rng).unwrap();
        assert!(rp.primaries[0]);
        let rr = resolve_in(&TargetSpec::RandomReplica, &cluster(), &view, &mut rng).unwrap();
        assert!(!rr.primaries[0]);
        // A failed primary is not chosen.
        let failed =
            View::parse(&VIEW.replace("a 10.0.0.1:6379@16379 master", "a 10.0.0.1:6379@16379 master,fail"))
                .unwrap();
        for _ in 0..20 {
            let rp = resolve_in(&TargetSpec::RandomPrimary, &cluster(), &failed, &mut rng).unwrap();
            assert_ne!(names(&rp), vec!["redis-1"]);
        }
        let err = resolve_in(&TargetSpec::Node("redis-9".into()), &cluster(), &view, &mut rng).unwrap_err();
        assert!(err.contains("no node named redis-9"), "{err}");
    }
}
