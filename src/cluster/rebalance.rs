//! Rebalancing: even slot shares over every primary, empty ones included (`redis-cli
//! --cluster rebalance --cluster-use-empty-masters`). The plan is a pure function of a view
//! ([`rebalance_plan`]); [`rebalance`] carries it out one reshard per move.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::admin::AdminError;
use super::migrate::{ReshardEvent, ReshardOptions, ReshardPlan, ReshardReport, reshard};
use super::settle;
use super::topology::{NodeEntry, NodeId, SlotRange, View, slots_in, to_ranges};

/// Slots to move from one primary to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The primary giving the slots.
    pub from: NodeId,
    /// The primary receiving them.
    pub to: NodeId,
    /// The slots, lowest of the giver's first.
    pub slots: Vec<SlotRange>,
}

impl Move {
    /// How many slots move.
    pub fn len(&self) -> u32 {
        self.slots.iter().map(SlotRange::len).sum()
    }

    /// True when the move carries no slot (never the case in a plan).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The moves that leave every live primary of `view` (empty ones included, failed ones left
/// out) with `total / n` slots or one more, moving as few slots as possible: the extra slots
/// of an uneven split stay with the primaries that already have the most, and each giver's
/// surplus goes to the receivers in as few moves as the greedy pairing allows.
pub fn rebalance_plan(view: &View) -> Vec<Move> {
    let mut primaries: Vec<&NodeEntry> =
        view.nodes.iter().filter(|n| n.is_primary() && !n.is_failed()).collect();
    if primaries.is_empty() {
        return Vec::new();
    }
    // Most slots first, so the remainder's extra slot goes where the slots already are.
    primaries.sort_by(|a, b| b.slot_count().cmp(&a.slot_count()).then_with(|| a.id.cmp(&b.id)));
    let n = primaries.len() as i64;
    let total: i64 = primaries.iter().map(|p| i64::from(p.slot_count())).sum();
    let (base, extra) = (total / n, total % n);
    let mut givers: Vec<(&NodeEntry, i64, Vec<u16>)> = Vec::new();
    let mut takers: Vec<(&NodeEntry, i64)> = Vec::new();
    for (i, p) in primaries.iter().enumerate() {
        let target = base + i64::from((i as i64) < extra);
        let balance = i64::from(p.slot_count()) - target;
        if balance > 0 {
            let mut ranges = p.slots.clone();
            ranges.sort();
            givers.push((p, balance, slots_in(&ranges)));
        } else if balance < 0 {
            takers.push((p, -balance));
        }
    }
    takers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
    let mut moves = Vec::new();
    let (mut g, mut t) = (0, 0);
    let mut cursor = 0usize;
    while g < givers.len() && t < takers.len() {
        let amount = givers[g].1.min(takers[t].1);
        let slots = &givers[g].2[cursor..cursor + amount as usize];
        moves.push(Move {
            from: givers[g].0.id.clone(),
            to: takers[t].0.id.clone(),
            slots: to_ranges(slots.iter().copied()),
        });
        cursor += amount as usize;
        givers[g].1 -= amount;
        takers[t].1 -= amount;
        if givers[g].1 == 0 {
            g += 1;
            cursor = 0;
        }
        if takers[t].1 == 0 {
            t += 1;
        }
    }
    moves
}

/// A finished rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebalanceReport {
    /// One report per move, in plan order.
    pub moves: Vec<ReshardReport>,
    /// The whole rebalance, agreement included.
    pub elapsed: Duration,
}

impl RebalanceReport {
    /// Slots moved in all.
    pub fn slots(&self) -> u32 {
        self.moves.iter().map(|m| m.slots).sum()
    }

    /// Keys moved in all.
    pub fn keys(&self) -> u64 {
        self.moves.iter().map(|m| m.keys).sum()
    }
}

/// Plan with [`rebalance_plan`] from the seed's view and carry out each move with
/// [`reshard`] (`opts` apply to each; `opts.timeout` to the whole), then wait until the
/// answering nodes settle. Without `use_empty_primaries`, primaries that serve no slot are
/// left out (as `redis-cli --cluster rebalance` without `--cluster-use-empty-masters`).
/// Refused when slots are uncovered or open: `fix` first.
///
/// # Errors
/// [`AdminError::SlotsOpen`] before anything moves; then any error of [`reshard`].
pub async fn rebalance(
    seeds: &[SocketAddr],
    use_empty_primaries: bool,
    opts: &ReshardOptions,
    on_event: &(dyn Fn(ReshardEvent) + Send + Sync),
) -> Result<RebalanceReport, AdminError> {
    let start = Instant::now();
    let mut view = settle::seed_view(seeds).await?;
    let health = super::fix::slot_health(&view).await;
    if !health.is_clean() {
        return Err(AdminError::SlotsOpen { slots: health.to_string() });
    }
    if !use_empty_primaries {
        // Primaries without slots stay out of the plan (and so stay empty).
        view.nodes.retain(|n| !n.is_primary() || !n.slots.is_empty());
    }
    let mut moves = Vec::new();
    for m in rebalance_plan(&view) {
        let plan = ReshardPlan { from: m.from.into(), to: m.to.into(), slots: m.slots };
        let left = opts.timeout.saturating_sub(start.elapsed());
        let step = ReshardOptions { timeout: left, wait_agreement: true, ..opts.clone() };
        moves.push(reshard(seeds, &plan, &step, on_event).await?);
    }
    settle::wait_settled(seeds, opts.timeout.saturating_sub(start.elapsed())).await?;
    Ok(RebalanceReport { moves, elapsed: start.elapsed() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A view with one primary per entry of `counts`, each serving a contiguous block.
    fn view_of(counts: &[u32]) -> View {
        let mut text = String::new();
        let mut next = 0u32;
        for (i, &c) in counts.iter().enumerate() {
            let slots = if c == 0 { String::new() } else { format!("{next}-{}", next + c - 1) };
            text.push_str(&format!("n{i} 10.0.0.{i}:6379@16379 master - 0 0 {i} connected {slots}\n"));
            next += c;
        }
        View::parse(&text).unwrap()
    }

    /// The slot count of every primary after applying `moves`.
    fn after(view: &View, moves: &[Move]) -> Vec<i64> {
        view.nodes
            .iter()
            .map(|n| {
                let gained: u32 = moves.iter().filter(|m| m.to == n.id).map(Move::len).sum();
                let lost: u32 = moves.iter().filter(|m| m.from == n.id).map(Move::len).sum();
                i64::from(n.slot_count()) + i64::from(gained) - i64::from(lost)
            })
            .collect()
    }

    #[test]
    fn an_empty_fourth_primary_gets_a_quarter_from_each_of_three() {
        let v = view_of(&[5461, 5462, 5461, 0]);
        let moves = rebalance_plan(&v);
        assert_eq!(moves.len(), 3);
        assert!(moves.iter().all(|m| m.to == NodeId("n3".into())));
        assert_eq!(after(&v, &moves), vec![4096; 4]);
        // Lowest of each giver's slots first.
        assert_eq!(
            moves.iter().find(|m| m.from.0 == "n0").unwrap().slots,
            vec![SlotRange { start: 0, end: 1364 }]
        );
    }

    #[test]
    fn a_balanced_cluster_needs_no_move() {
        assert!(rebalance_plan(&view_of(&[5461, 5462, 5461])).is_empty());
        assert!(rebalance_plan(&view_of(&[16384])).is_empty());
        assert!(rebalance_plan(&View::default()).is_empty());
    }

    #[test]
    fn uneven_splits_keep_the_extra_slots_where_they_are() {
        // 16384 over 3 is 5461 r 1: the node with 5462 keeps its extra slot, nothing moves.
        let v = view_of(&[5462, 5461, 5461]);
        assert!(rebalance_plan(&v).is_empty());
        let v = view_of(&[16384, 0]);
        let moves = rebalance_plan(&v);
        assert_eq!(
            moves,
            vec![Move {
                from: NodeId("n0".into()),
                to: NodeId("n1".into()),
                slots: vec![SlotRange { start: 0, end: 8191 }]
            }]
        );
    }

    #[test]
    fn random_layouts_end_within_one_slot_moving_only_the_surplus() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for _ in 0..200 {
            let n = rng.random_range(1..=9);
            let mut counts = vec![0u32; n];
            for _ in 0..16384 {
                // Skewed: the first nodes get more.
                let i = rng.random_range(0..n).min(rng.random_range(0..n));
                counts[i] += 1;
            }
            let v = view_of(&counts);
            let moves = rebalance_plan(&v);
            let end = after(&v, &moves);
            let (lo, hi) = (*end.iter().min().unwrap(), *end.iter().max().unwrap());
            assert!(hi - lo <= 1, "{counts:?} -> {end:?}");
            assert_eq!(end.iter().sum::<i64>(), 16384);
            let share = 16384 / n as i64;
            let surplus: i64 = counts.iter().map(|&c| (i64::from(c) - share - 1).max(0)).sum();
            let moved: i64 = moves.iter().map(|m| i64::from(m.len())).sum();
            assert!(
                moved >= surplus && moved <= counts.iter().map(|&c| (i64::from(c) - share).max(0)).sum(),
                "{counts:?}"
            );
            assert!(moves.len() < n.max(1), "{} moves for {n} primaries", moves.len());
            // Each giver gives slots it has.
            for m in &moves {
                let giver = v.node(&m.from).unwrap();
                assert!(
                    slots_in(&m.slots)
                        .iter()
                        .all(|&s| giver.slots.iter().any(|r| r.start <= s && s <= r.end))
                );
            }
        }
    }
}
