//! How a refresh of the router's slot table gathers `CLUSTER NODES` views and merges them.
//!
//! Views are merged as the cluster itself settles who owns a slot: a slot goes to the
//! claimant with the highest config epoch. A replica that wins an election takes a config
//! epoch above every other, so its claim beats the stale ones of nodes that have not heard
//! yet; a primary cut off from the majority keeps claiming its old slots at its old epoch and
//! loses to the replica the majority promoted. (The rule before this one kept the single view
//! that covered most slots, then had the highest epoch: the same protection, but only once
//! every node had answered.)
//!
//! A round asks its nodes at once and never waits on one that does not answer: it ends
//! [`GRACE`] after the merged views first cover every slot (or after more than half the nodes
//! asked have answered, for a cluster with uncovered slots), when every ask has finished, or
//! at [`ROUND_TIMEOUT`], whichever comes first.
//!
//! Pure apart from the clock: no connections here (the router supplies the asks).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::{NO_OWNER, SlotTable};
use crate::cluster::slot::SLOT_COUNT;
use crate::cluster::topology::View;

/// How long a round waits for more views once it has enough: nodes on one network answer
/// `CLUSTER NODES` within a few ms, so this catches the late but live ones (a newer epoch
/// among them wins), while a node that is gone costs no more than this.
pub(super) const GRACE: Duration = Duration::from_millis(25);

/// The longest a round waits when it never has enough views.
pub(super) const ROUND_TIMEOUT: Duration = crate::cluster::node::ADMIN_TIMEOUT;

/// The views of one refresh, merged slot by slot.
pub(super) struct Merge {
    /// Who serves each slot by the views so far.
    pub(super) table: SlotTable,
    /// Per slot, the config epoch of the claim `table` holds (0 where it holds none).
    pub(super) claims: Vec<u64>,
    /// How many views were merged.
    pub(super) views: usize,
    /// Some view shows a primary that serves slots flagged `fail?` or `fail`: a failover may
    /// be under way, and the table is worth rereading soon whether or not ops fail.
    pub(super) in_flux: bool,
}

impl Merge {
    /// No views yet.
    pub(super) fn new() -> Merge {
        Merge {
            table: SlotTable { addrs: Vec::new(), owner: vec![NO_OWNER; usize::from(SLOT_COUNT)] },
            claims: vec![0; usize::from(SLOT_COUNT)],
            views: 0,
            in_flux: false,
        }
    }

    /// Merge one node's view: each slot a primary in it serves goes to that primary unless
    /// an earlier view gave it to one with an equal or higher config epoch. A primary flagged
    /// failed keeps its slots (see [`SlotTable::from_view`]).
    pub(super) fn add(&mut self, view: &View) {
        self.views += 1;
        for node in view.nodes.iter().filter(|n| n.is_primary() && !n.slots.is_empty()) {
            self.in_flux |= node.is_failed() || node.is_suspected();
            let Ok(addr) = node.addr.parse::<SocketAddr>() else { continue };
            let index = self.table.index(addr);
            for r in &node.slots {
                for slot in usize::from(r.start)..=usize::from(r.end).min(usize::from(SLOT_COUNT) - 1) {
                    let held = self.table.owner[slot];
                    if held == NO_OWNER || node.config_epoch > self.claims[slot] {
                        self.table.owner[slot] = index;
                        self.claims[slot] = node.config_epoch;
                    }
                }
            }
        }
    }

    /// True when some view gave every slot an owner.
    pub(super) fn covers_all(&self) -> bool {
        self.table.covered() == usize::from(SLOT_COUNT)
    }

    /// `installed` with every slot taken over where these views name a different owner by a
    /// claim newer than `installed_claims` records (or name one where it has none); `None`
    /// when there is no such slot. The slots taken over get their new claim in
    /// `installed_claims`.
    pub(super) fn newer_than(
        &self,
        installed: &SlotTable,
        installed_claims: &mut [u64],
    ) -> Option<SlotTable> {
        let mut out: Option<SlotTable> = None;
        for slot in 0..SLOT_COUNT {
            let s = usize::from(slot);
            let Some(claimant) = self.table.owner(slot) else { continue };
            let current = installed.owner(slot);
            if current == Some(claimant) || (current.is_some() && self.claims[s] <= installed_claims[s]) {
                continue;
            }
            out.get_or_insert_with(|| installed.clone()).set_owner(slot, claimant);
            installed_claims[s] = self.claims[s];
        }
        out
    }

    /// The table a finished round installs: `installed` with every slot these views name an
    /// owner for by a claim at least as new as `installed_claims` records (or where the
    /// installed table has none), their claims noted; every other slot keeps its installed
    /// owner. A stale view that answered first (a cut-off primary, a killed one started again
    /// with its old `nodes.conf`) never takes back slots a newer claim holds, however late
    /// the newer view arrives.
    pub(super) fn onto(&self, installed: &SlotTable, installed_claims: &mut [u64]) -> SlotTable {
        let mut out = installed.clone();
        for slot in 0..SLOT_COUNT {
            let s = usize::from(slot);
            let Some(claimant) = self.table.owner(slot) else { continue };
            if installed.owner(slot).is_none() || self.claims[s] >= installed_claims[s] {
                if installed.owner(slot) != Some(claimant) {
                    out.set_owner(slot, claimant);
                }
                installed_claims[s] = self.claims[s];
            }
        }
        out
    }
}

/// Run one round of `asks` (one per node, each ending with its view or `None`), merging each
/// view into `merge` as it arrives and calling `merged` after each; returns when the round
/// is over (see the module doc). Asks still running then are dropped.
pub(super) async fn gather<F>(asks: Vec<F>, merge: &mut Merge, mut merged: impl FnMut(&Merge))
where
    F: Future<Output = Option<View>>,
{
    let asked = asks.len();
    let mut pending: FuturesUnordered<F> = asks.into_iter().collect();
    let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
    let mut until = deadline;
    let mut answered = 0;
    loop {
        tokio::select! {
            next = pending.next() => match next {
                None => return,
                Some(None) => {}
                Some(Some(view)) => {
                    answered += 1;
                    merge.add(&view);
                    merged(merge);
                    if until == deadline && (merge.covers_all() || 2 * answered > asked) {
                        until = (tokio::time::Instant::now() + GRACE).min(deadline);
                    }
                }
            },
            () = tokio::time::sleep_until(until) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        format!("10.0.0.{n}:6379").parse().unwrap()
    }

    fn view(text: &str) -> View {
        View::parse(text).unwrap()
    }

    /// Before the kill: a (10.0.0.1, epoch 1) serves 0-8191, b (epoch 2) the rest, c
    /// replicates a.
    fn before() -> View {
        view(
            "a 10.0.0.1:6379@16379 master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 myself,master - 0 0 2 connected 8192-16383
c 10.0.0.3:6379@16379 slave a 0 0 1 connected
",
        )
    }

    /// b has not heard of the election yet: a is failed but still listed with its slots.
    fn stale() -> View {
        view(
            "a 10.0.0.1:6379@16379 master,fail - 0 0 1 disconnected 0-8191
b 10.0.0.2:6379@16379 myself,master - 0 0 2 connected 8192-16383
c 10.0.0.3:6379@16379 slave a 0 0 1 connected
",
        )
    }

    /// c won the election with epoch 3.
    fn elected() -> View {
        view(
            "a 10.0.0.1:6379@16379 master,fail - 0 0 1 disconnected
b 10.0.0.2:6379@16379 master - 0 0 2 connected 8192-16383
c 10.0.0.3:6379@16379 myself,master - 0 0 3 connected 0-8191
",
        )
    }

    #[test]
    fn the_newest_claim_wins_whichever_view_comes_first() {
        for order in [[stale(), elected()], [elected(), stale()]] {
            let mut m = Merge::new();
            for v in &order {
                m.add(v);
            }
            assert_eq!(m.table.owner(0), Some(addr(3)));
            assert_eq!(m.table.owner(8191), Some(addr(3)));
            assert_eq!(m.table.owner(8192), Some(addr(2)));
            assert!(m.covers_all());
            assert_eq!(m.views, 2);
            assert!(m.in_flux, "the stale view still shows a failed primary serving slots");
        }
        let mut m = Merge::new();
        m.add(&elected());
        assert!(!m.in_flux, "a failed primary without slots is over and done");
    }

    #[test]
    fn a_primary_cut_off_from_the_majority_loses_its_slots_to_the_promoted_replica() {
        // a, cut off, still serves its slots and suspects everyone; the majority promoted c.
        let cut_off = view(
            "a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-8191
b 10.0.0.2:6379@16379 master,fail? - 0 0 2 disconnected 8192-16383
c 10.0.0.3:6379@16379 slave,fail? a 0 0 1 disconnected
",
        );
        for order in [[cut_off.clone(), elected()], [elected(), cut_off.clone()]] {
            let mut m = Merge::new();
            for v in &order {
                m.add(v);
            }
            assert_eq!(m.table.owner(100), Some(addr(3)));
            assert_eq!(m.table.nodes(), vec![addr(2), addr(3)]);
        }
        // Alone, the cut-off view is all there is to go by.
        let mut m = Merge::new();
        m.add(&cut_off);
        assert_eq!(m.table.owner(100), Some(addr(1)));
    }

    #[test]
    fn partial_views_cover_the_slots_together() {
        let mut m = Merge::new();
        m.add(&view("a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-99\n"));
        assert!(!m.covers_all());
        m.add(&view("b 10.0.0.2:6379@16379 myself,master - 0 0 2 connected 100-16383\n"));
        assert!(m.covers_all());
        assert_eq!((m.table.owner(99), m.table.owner(100)), (Some(addr(1)), Some(addr(2))));
    }

    #[test]
    fn a_newer_owner_is_taken_over_at_once_and_a_stale_one_never() {
        let mut first = Merge::new();
        first.add(&before());
        let installed = first.table.clone();
        let mut claims = first.claims.clone();

        let mut m = Merge::new();
        m.add(&stale());
        assert!(m.newer_than(&installed, &mut claims).is_none(), "nothing newer");
        m.add(&elected());
        let t = m.newer_than(&installed, &mut claims).expect("c's claim is newer");
        assert_eq!((t.owner(0), t.owner(8192)), (Some(addr(3)), Some(addr(2))));
        assert_eq!(claims[0], 3);
        assert_eq!(claims[8192], 2);

        // A later view from a node that has not heard does not take the slots back.
        let mut late = Merge::new();
        late.add(&stale());
        assert!(late.newer_than(&t, &mut claims).is_none());

        // A round that heard only the stale view (the newer one came after the grace) ends
        // with the newer owners kept.
        let kept = late.onto(&t, &mut claims);
        assert_eq!((kept.owner(0), kept.owner(8192)), (Some(addr(3)), Some(addr(2))));
        assert_eq!(claims[0], 3, "the newer claim stays recorded");
        // A round's claims as new as the installed ones are taken (the round is the latest
        // word), and a slot no view named keeps its owner.
        let mut again = Merge::new();
        again.add(&elected());
        assert!(again.onto(&kept, &mut claims).same_owners(&kept));

        // A slot the table has no owner for takes any claim.
        let mut empty = Merge::new().table;
        let mut none = vec![0; usize::from(SLOT_COUNT)];
        empty.set_owner(5, addr(1));
        let t = late.newer_than(&empty, &mut none).expect("owners for the uncovered slots");
        assert_eq!((t.owner(4), t.owner(5)), (Some(addr(1)), Some(addr(1))));
    }

    /// An ask answering `v` after `ms` ms, or never.
    async fn ask(ms: Option<u64>, v: View) -> Option<View> {
        match ms {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Some(v)
            }
            None => std::future::pending().await,
        }
    }

    #[tokio::test]
    async fn a_round_does_not_wait_for_a_node_that_never_answers() {
        let started = std::time::Instant::now();
        let mut m = Merge::new();
        let mut seen = Vec::new();
        let asks = vec![ask(None, before()), ask(Some(1), stale()), ask(Some(5), elected())];
        gather(asks, &mut m, |m| seen.push(m.table.owner(0))).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(500), "took {took:?}");
        assert_eq!(m.views, 2);
        // The newer view arrived within the grace and was merged.
        assert_eq!(seen, vec![Some(addr(1)), Some(addr(3))]);
    }

    #[tokio::test]
    async fn a_round_waits_out_the_grace_for_a_late_newer_view_but_no_longer() {
        let started = std::time::Instant::now();
        let mut m = Merge::new();
        let asks = vec![ask(Some(1), stale()), ask(Some(10), elected()), ask(Some(400), before())];
        gather(asks, &mut m, |_| {}).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(300), "took {took:?}");
        assert_eq!(m.views, 2, "the 400 ms answer came after the grace");
        assert_eq!(m.table.owner(0), Some(addr(3)));
    }

    #[tokio::test]
    async fn a_round_whose_views_never_cover_every_slot_ends_once_most_have_answered() {
        let started = std::time::Instant::now();
        let mut m = Merge::new();
        let part = view("a 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-99\n");
        let asks = vec![ask(Some(1), part.clone()), ask(Some(2), part.clone()), ask(None, part)];
        gather(asks, &mut m, |_| {}).await;
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(m.views, 2);
        // With nothing answering, the round gives up at its timeout.
        let mut m = Merge::new();
        let started = std::time::Instant::now();
        gather(vec![ask(None, before())], &mut m, |_| {}).await;
        assert!(started.elapsed() >= ROUND_TIMEOUT);
        assert_eq!(m.views, 0);
    }
}
