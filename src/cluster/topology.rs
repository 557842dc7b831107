//! The cluster's shape as one node sees it: parsing `CLUSTER NODES` into a [`View`], and
//! comparing views to decide whether the nodes agree.
//!
//! Pure code: no I/O. Bootstrap, status and (later) the failover observer all read topology
//! through this module, so the format is parsed in one place.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;

use super::slot::SLOT_COUNT;

/// A node's 40-character cluster id (`CLUSTER MYID`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An inclusive range of slots, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRange {
    /// First slot of the range.
    pub start: u16,
    /// Last slot of the range (inclusive).
    pub end: u16,
}

impl SlotRange {
    /// How many slots the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Always false: a range holds at least one slot. Present for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for SlotRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Split all 16384 slots evenly over `masters` primaries, the way `redis-cli --cluster
/// create` does (3 primaries get 0-5460, 5461-10922, 10923-16383).
pub fn even_slot_ranges(masters: usize) -> Vec<SlotRange> {
    assert!(masters > 0 && masters <= usize::from(SLOT_COUNT));
    let per_node = f64::from(SLOT_COUNT) / masters as f64;
    let mut ranges = Vec::with_capacity(masters);
    // As redis-cli: the cursor advances by the exact (fractional) share; `first` follows `last`.
    let mut cursor = 0f64;
    let mut first = 0u32;
    for i in 0..masters {
        let last = if i + 1 == masters {
            u32::from(SLOT_COUNT) - 1
        } else {
            ((cursor + per_node - 1.0).round() as u32).clamp(first, u32::from(SLOT_COUNT) - 1)
        };
        ranges.push(SlotRange { start: first as u16, end: last as u16 });
        first = last + 1;
        cursor += per_node;
    }
    ranges
}

/// One line of `CLUSTER NODES`: a node as seen by the node that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's cluster id.
    pub id: NodeId,
    /// `ip:port` clients use; empty when the node has no known address (`noaddr`).
    pub addr: String,
    /// Flags as reported: `myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, `noaddr`,
    /// `nofailover`, `noflags`.
    pub flags: Vec<String>,
    /// The primary this node replicates, when it is a replica.
    pub primary: Option<NodeId>,
    /// The configuration epoch.
    pub config_epoch: u64,
    /// Whether the cluster bus link to this node is up (`connected`).
    pub connected: bool,
    /// Slots served by this node.
    pub slots: Vec<SlotRange>,
    /// Slots this node is migrating to (`[slot->-id]`) or importing from (`[slot-<-id]`)
    /// another node, as `(slot, peer, importing)`.
    pub open_slots: Vec<(u16, NodeId, bool)>,
}

impl NodeEntry {
    /// True for the line describing the answering node itself.
    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    /// True when the node is a primary.
    pub fn is_primary(&self) -> bool {
        self.has_flag("master")
    }

    /// True when the answering node believes this node failed (`fail`, not `fail?`).
    pub fn is_failed(&self) -> bool {
        self.has_flag("fail")
    }

    /// True when the answering node suspects this node (`fail?`).
    pub fn is_suspected(&self) -> bool {
        self.has_flag("fail?")
    }

    /// True while the node is still in the MEET handshake.
    pub fn in_handshake(&self) -> bool {
        self.has_flag("handshake")
    }

    /// Whether `flag` is among the node's flags.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Number of slots the node serves.
    pub fn slot_count(&self) -> u32 {
        self.slots.iter().map(SlotRange::len).sum()
    }
}

/// A malformed `CLUSTER NODES` reply.
#[derive(Debug, thiserror::Error)]
#[error("malformed CLUSTER NODES line {line:?}: {reason}")]
pub struct ParseError {
    /// The offending line.
    pub line: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// The whole cluster as one node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Every node the answering node knows, in reply order.
    pub nodes: Vec<NodeEntry>,
}

impl View {
    /// Parse the text of a `CLUSTER NODES` reply.
    ///
    /// # Errors
    /// [`ParseError`] when a line has too few fields or a field does not parse.
    pub fn parse(text: &str) -> Result<View, ParseError> {
        let nodes =
            text.lines().filter(|l| !l.trim().is_empty()).map(parse_line).collect::<Result<_, _>>()?;
        Ok(View { nodes })
    }

    /// The answering node's own entry.
    pub fn myself(&self) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.is_myself())
    }

    /// The entry for node `id`.
    pub fn node(&self, id: &NodeId) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    /// The node serving `slot`, if any.
    pub fn owner_of(&self, slot: u16) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.slots.iter().any(|r| r.start <= slot && slot <= r.end))
    }

    /// Number of slots some node serves.
    pub fn covered_slots(&self) -> u32 {
        self.nodes.iter().map(NodeEntry::slot_count).sum()
    }

    /// The part of the view every healthy node must agree on: who serves which slots and who
    /// replicates whom. Flags that are local opinions (`myself`, `fail?`) are left out.
    pub fn shape(&self) -> Shape {
        let mut primaries = BTreeMap::new();
        let mut replicas = BTreeMap::new();
        for n in &self.nodes {
            if n.is_primary() {
                let mut slots = n.slots.clone();
                slots.sort();
                primaries.insert(n.id.clone(), slots);
            } else if let Some(p) = &n.primary {
                replicas.insert(n.id.clone(), p.clone());
            }
        }
        Shape { primaries, replicas }
    }
}

/// Slot ownership and replication as one node sees them; equal shapes mean agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Each primary and the slots it serves.
    pub primaries: BTreeMap<NodeId, Vec<SlotRange>>,
    /// Each replica and its primary.
    pub replicas: BTreeMap<NodeId, NodeId>,
}

fn parse_line(line: &str) -> Result<NodeEntry, ParseError> {
    let err = |reason| ParseError { line: line.to_string(), reason };
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return Err(err("fewer than 8 fields"));
    }
    // `ip:port@cport[,hostname]`; an unknown address shows as `:0@0` or `:port@cport`.
    let addr = fields[1].split('@').next().unwrap_or_default();
    let addr = if addr.starts_with(':') { String::new() } else { addr.to_string() };
    let flags = fields[2].split(',').map(str::to_string).collect();
    let primary = (fields[3] != "-").then(|| NodeId(fields[3].to_string()));
    let config_epoch = fields[6].parse().map_err(|_| err("config epoch is not a number"))?;
    let connected = fields[7] == "connected";
    let mut slots = Vec::new();
    let mut open_slots = Vec::new();
    for f in &fields[8..] {
        if let Some(inner) = f.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let (slot, importing, peer) = if let Some((s, p)) = inner.split_once("->-") {
                (s, false, p)
            } else if let Some((s, p)) = inner.split_once("-<-") {
                (s, true, p)
            } else {
                return Err(err("unknown open-slot syntax"));
            };
            let slot = slot.parse().map_err(|_| err("open slot is not a number"))?;
            open_slots.push((slot, NodeId(peer.to_string()), importing));
            continue;
        }
        let (a, b) = f.split_once('-').unwrap_or((f, f));
        let start: u16 = a.parse().map_err(|_| err("slot is not a number"))?;
        let end: u16 = b.parse().map_err(|_| err("slot is not a number"))?;
        if start > end || end >= SLOT_COUNT {
            return Err(err("slot range out of order or out of bounds"));
        }
        slots.push(SlotRange { start, end });
    }
    Ok(NodeEntry {
        id: NodeId(fields[0].to_string()),
        addr,
        flags,
        primary,
        config_epoch,
        connected,
        slots,
        open_slots,
    })
}

/// Slot numbers as compact ranges: `0-99,200 (101 slots)`.
pub fn slot_list(slots: impl IntoIterator<Item = u16>) -> String {
    let ranges = to_ranges(slots);
    let count: u32 = ranges.iter().map(SlotRange::len).sum();
    let mut text: Vec<String> = ranges.iter().take(8).map(ToString::to_string).collect();
    if ranges.len() > 8 {
        text.push("…".into());
    }
    let noun = if count == 1 { "slot" } else { "slots" };
    format!("{} ({count} {noun})", text.join(","))
}

/// Slot numbers (any order, duplicates allowed) as sorted inclusive ranges.
pub fn to_ranges(slots: impl IntoIterator<Item = u16>) -> Vec<SlotRange> {
    let sorted: BTreeSet<u16> = slots.into_iter().collect();
    let mut ranges: Vec<SlotRange> = Vec::new();
    for s in sorted {
        match ranges.last_mut() {
            Some(r) if u32::from(r.end) + 1 == u32::from(s) => r.end = s,
            _ => ranges.push(SlotRange { start: s, end: s }),
        }
    }
    ranges
}

/// Every slot number of `ranges`, in order.
pub fn slots_in(ranges: &[SlotRange]) -> Vec<u16> {
    ranges.iter().flat_map(|r| r.start..=r.end).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_lists_are_compact() {
        assert_eq!(
            to_ranges([3, 1, 2, 7, 2]),
            vec![SlotRange { start: 1, end: 3 }, SlotRange { start: 7, end: 7 }]
        );
        assert_eq!(slot_list([0, 1, 2, 10]), "0-2,10 (4 slots)");
        assert_eq!(slots_in(&[SlotRange { start: 5, end: 7 }]), vec![5, 6, 7]);
    }

    const THREE_BY_TWO: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 172.18.0.5:6379@16379 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 172.18.0.3:6379@16379 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 172.18.0.4:6379@16379 master - 0 1426238318243 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 172.18.0.6:6379@16379 slave 67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 0 1426238316232 5 connected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 172.18.0.7:6379@16379 slave 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 172.18.0.2:6379@16379 myself,master - 0 0 1 connected 0-5460
";

    #[test]
    fn parses_a_healthy_three_by_two_cluster() {
        let v = View::parse(THREE_BY_TWO).unwrap();
        assert_eq!(v.nodes.len(), 6);
        let me = v.myself().unwrap();
        assert_eq!(me.addr, "172.18.0.2:6379");
        assert!(me.is_primary());
        assert_eq!(me.slots, vec![SlotRange { start: 0, end: 5460 }]);
        assert_eq!(v.covered_slots(), 16384);
        assert_eq!(v.owner_of(5461).unwrap().addr, "172.18.0.3:6379");
        let r = &v.nodes[0];
        assert!(!r.is_primary());
        assert_eq!(r.primary.as_ref().unwrap(), &me.id);
        assert_eq!(v.shape().primaries.len(), 3);
        assert_eq!(v.shape().replicas.len(), 3);
    }

    #[test]
    fn shape_ignores_local_opinions_but_not_ownership() {
        let a = View::parse(THREE_BY_TWO).unwrap();
        // Another node's view: a different `myself`, a suspected peer, lines in another order.
        let other = THREE_BY_TWO
            .replace("myself,master", "master")
            .replace("172.18.0.3:6379@16379 master", "172.18.0.3:6379@16379 myself,master")
            .replace("172.18.0.4:6379@16379 master", "172.18.0.4:6379@16379 master,fail?");
        let mut b = View::parse(&other).unwrap();
        b.nodes.reverse();
        assert_eq!(a.shape(), b.shape());
        // Moving one slot changes the shape.
        let moved = THREE_BY_TWO.replace("0-5460", "0-5459").replace("5461-10922", "5460-10922");
        assert_ne!(a.shape(), View::parse(&moved).unwrap().shape());
    }

    #[test]
    fn parses_open_slots_single_slots_and_noaddr() {
        let text = "\
aaaa 10.0.0.1:6379@16379,host1 myself,master - 0 0 1 connected 0-10 12 [11->-bbbb]
bbbb :0@0 master,noaddr - 0 0 2 disconnected 13-16383 [11-<-aaaa]
";
        let v = View::parse(text).unwrap();
        let a = &v.nodes[0];
        assert_eq!(a.addr, "10.0.0.1:6379");
        assert_eq!(a.slots, vec![SlotRange { start: 0, end: 10 }, SlotRange { start: 12, end: 12 }]);
        assert_eq!(a.open_slots, vec![(11, NodeId("bbbb".into()), false)]);
        let b = &v.nodes[1];
        assert_eq!(b.addr, "");
        assert!(!b.connected);
        assert_eq!(b.open_slots, vec![(11, NodeId("aaaa".into()), true)]);
        assert_eq!(v.covered_slots(), 16383 - 13 + 1 + 12);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(View::parse("abc 1.2.3.4:1@2 master").is_err());
        assert!(View::parse("a 1:1@2 master - 0 0 x connected").is_err());
        assert!(View::parse("a 1:1@2 master - 0 0 1 connected 5-3").is_err());
        assert!(View::parse("a 1:1@2 master - 0 0 1 connected 0-16384").is_err());
    }

    #[test]
    fn even_ranges_match_redis_cli() {
        let r = even_slot_ranges(3);
        assert_eq!(
            r,
            vec![
                SlotRange { start: 0, end: 5460 },
                SlotRange { start: 5461, end: 10922 },
                SlotRange { start: 10923, end: 16383 }
            ]
        );
        for m in 1..=10 {
            let r = even_slot_ranges(m);
            assert_eq!(r.len(), m);
            assert_eq!(r.iter().map(SlotRange::len).sum::<u32>(), 16384);
            assert!(r.windows(2).all(|w| w[0].end + 1 == w[1].start));
        }
    }
}
