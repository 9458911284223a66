//! The dynamic reconstruction buffer in the LMD: rebuilt tiles, a byte capacity, and an
//! eviction policy that uses the running multiply's schedule when it is known.
//!
//! A consumer asks for tiles in order ([`ReconstructionBuffer::access`]). A resident tile
//! is a hit; a missing one is a miss: the caller decodes and rebuilds it, and the buffer
//! makes room by evicting resident tiles, never going above its capacity:
//! - [`Policy::Belady`]: given the whole access schedule, evict the tile whose next use
//!   is farthest away (never used again first). This is optimal for a known trace.
//! - [`Policy::Lru`]: evict the least recently used, when the pattern is unknown.
//!
//! The scheduler ([`crate::schedule`]) decides with it (`access_pinned`: ids and sizes
//! only, `V = ()`), and the timing model replays those decisions; the real executor
//! ([`crate::exec`]) holds the rebuilt tiles in it (`V` = a tile's memory:
//! [`ReconstructionBuffer::insert`], [`ReconstructionBuffer::evict`]), following the plan.
//! One type, one count of bytes held and of their peak.

use std::collections::{BTreeSet, HashMap};

/// A tile of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub tensor: u32,
    pub tile: u32,
}

/// How to choose what to evict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Farthest next use in the known schedule.
    Belady,
    /// Least recently used.
    Lru,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "belady" => Ok(Policy::Belady),
            "lru" => Ok(Policy::Lru),
            _ => Err(format!("unknown eviction policy {s:?} (belady, lru)")),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Belady => "belady",
            Policy::Lru => "lru",
        })
    }
}

/// Counters of a buffer's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferStats {
    pub hits: u64,
    pub misses: u64,
    pub bytes_decoded: u64,
    pub evictions: u64,
    pub peak_bytes: u64,
    pub capacity_bytes: u64,
}

/// Errors of the buffer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufferError {
    #[error("a tile of {tile_bytes} bytes does not fit a buffer of {capacity} bytes (the minimum is the largest tile)")]
    TooSmall { tile_bytes: u64, capacity: u64 },
    #[error("no room for a tile of {tile_bytes} bytes: {used} of {capacity} bytes are held by tiles in use")]
    AllPinned {
        tile_bytes: u64,
        capacity: u64,
        used: u64,
    },
}

/// What an access did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The tile was resident.
    Hit,
    /// The tile must be decoded; these tiles were evicted to make room for it.
    Miss { evicted: Vec<TileId> },
}

/// The buffer; `V` is what a resident tile holds (`()` for bookkeeping only).
#[derive(Debug, Clone)]
pub struct ReconstructionBuffer<V = ()> {
    capacity: u64,
    used: u64,
    policy: Policy,
    /// Resident tiles: their size and their eviction key.
    resident: HashMap<TileId, (u64, u64)>,
    /// Resident tiles in eviction order (first = evicted first): for Belady the key is
    /// `u64::MAX - next use`, for LRU the time of last use. Kept up to date on every
    /// access (only the accessed tile's key changes), so choosing a victim is O(log n).
    order: BTreeSet<(u64, TileId)>,
    /// For Belady: positions of every tile in the schedule.
    uses: HashMap<TileId, Vec<u64>>,
    now: u64,
    stats: BufferStats,
    /// The resident tiles' contents, for a buffer that holds them.
    values: HashMap<TileId, V>,
}

impl<V> ReconstructionBuffer<V> {
    /// A buffer of `capacity` bytes. With [`Policy::Belady`], `schedule` is the order in
    /// which tiles will be accessed (accesses must then follow it).
    pub fn new(capacity: u64, policy: Policy, schedule: &[TileId]) -> Self {
        let mut uses: HashMap<TileId, Vec<u64>> = HashMap::new();
        if policy == Policy::Belady {
            for (t, id) in schedule.iter().enumerate() {
                uses.entry(*id).or_default().push(t as u64);
            }
        }
        ReconstructionBuffer {
            capacity,
            used: 0,
            policy,
            resident: HashMap::new(),
            order: BTreeSet::new(),
            uses,
            now: 0,
            stats: BufferStats {
                capacity_bytes: capacity,
                ..BufferStats::default()
            },
            values: HashMap::new(),
        }
    }

    /// Puts a rebuilt tile of `bytes` bytes in (the executor, following a plan that made
    /// room for it): counts it in the bytes held and their peak.
    pub fn insert(&mut self, id: TileId, bytes: u64, value: V) {
        if let Some((old, key)) = self.resident.insert(id, (bytes, 0)) {
            self.used -= old;
            self.order.remove(&(key, id));
        }
        self.order.insert((0, id));
        self.values.insert(id, value);
        self.used += bytes;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.used);
    }

    /// Takes a tile out (the executor evicting as the plan says); its contents come back
    /// for reuse.
    pub fn evict(&mut self, id: TileId) -> Option<V> {
        let (bytes, key) = self.resident.remove(&id)?;
        self.order.remove(&(key, id));
        self.used -= bytes;
        self.values.remove(&id)
    }

    /// A resident tile's contents.
    pub fn get(&self, id: TileId) -> Option<&V> {
        self.values.get(&id)
    }

    /// Empties the buffer, handing back every tile's contents.
    pub fn drain(&mut self) -> impl Iterator<Item = V> + '_ {
        self.resident.clear();
        self.order.clear();
        self.used = 0;
        self.values.drain().map(|(_, v)| v)
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn stats(&self) -> BufferStats {
        self.stats
    }

    pub fn contains(&self, id: TileId) -> bool {
        self.resident.contains_key(&id)
    }

    /// Next use of `id` strictly after now (Belady), or never.
    fn next_use(&self, id: TileId) -> u64 {
        self.uses
            .get(&id)
            .and_then(|v| {
                let i = v.partition_point(|&t| t <= self.now);
                v.get(i).copied()
            })
            .unwrap_or(u64::MAX)
    }

    /// The eviction key of `id` after an access now (smaller = evicted sooner).
    fn key(&self, id: TileId) -> u64 {
        match self.policy {
            // Farthest next use first; never used again (u64::MAX) before all.
            Policy::Belady => u64::MAX - self.next_use(id),
            Policy::Lru => self.now,
        }
    }

    /// Accesses tile `id` of `bytes` bytes: a hit, or a miss with what was evicted.
    pub fn access(&mut self, id: TileId, bytes: u64) -> Result<Access, BufferError> {
        self.access_pinned(id, bytes, &HashMap::<TileId, ()>::new())
    }

    /// As [`Self::access`], never evicting a tile in `pinned` (tiles being multiplied or
    /// awaited; the values are not read). Errs with [`BufferError::AllPinned`], changing
    /// nothing, when the room cannot be made without evicting one.
    pub fn access_pinned<P>(
        &mut self,
        id: TileId,
        bytes: u64,
        pinned: &HashMap<TileId, P>,
    ) -> Result<Access, BufferError> {
        if bytes > self.capacity {
            return Err(BufferError::TooSmall {
                tile_bytes: bytes,
                capacity: self.capacity,
            });
        }
        let result = if let Some(&(_, old)) = self.resident.get(&id) {
            self.stats.hits += 1;
            self.order.remove(&(old, id));
            Access::Hit
        } else {
            // Check first that unpinned tiles free enough room, so a refusal changes nothing.
            let pinned_bytes: u64 = pinned
                .keys()
                .filter_map(|k| self.resident.get(k).map(|r| r.0))
                .sum();
            if pinned_bytes + bytes > self.capacity {
                return Err(BufferError::AllPinned {
                    tile_bytes: bytes,
                    capacity: self.capacity,
                    used: self.used,
                });
            }
            self.stats.misses += 1;
            self.stats.bytes_decoded += bytes;
            let mut evicted = Vec::new();
            while self.used + bytes > self.capacity {
                let &(k, v) = self
                    .order
                    .iter()
                    .find(|(_, t)| !pinned.contains_key(t))
                    .expect("room was checked before evicting");
                self.order.remove(&(k, v));
                self.used -= self.resident.remove(&v).expect("resident").0;
                self.values.remove(&v);
                self.stats.evictions += 1;
                evicted.push(v);
            }
            self.used += bytes;
            self.stats.peak_bytes = self.stats.peak_bytes.max(self.used);
            Access::Miss { evicted }
        };
        let key = self.key(id);
        self.resident.insert(id, (bytes, key));
        self.order.insert((key, id));
        self.now += 1;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(t: u32) -> TileId {
        TileId { tensor: 0, tile: t }
    }

    fn replay(policy: Policy, cap: u64, trace: &[(u32, u64)]) -> BufferStats {
        let schedule: Vec<TileId> = trace.iter().map(|&(t, _)| id(t)).collect();
        let mut b: ReconstructionBuffer = ReconstructionBuffer::new(cap, policy, &schedule);
        for &(t, bytes) in trace {
            b.access(id(t), bytes).unwrap();
            assert!(b.used() <= cap);
        }
        b.stats()
    }

    proptest! {
        #[test]
        fn never_over_capacity_and_belady_never_decodes_more_than_lru(
            tiles in proptest::collection::vec(0u32..12, 1..200),
            cap_tiles in 1u64..8,
        ) {
            // Equal-size tiles: Belady is optimal, so it never misses more than LRU.
            let trace: Vec<(u32, u64)> = tiles.iter().map(|&t| (t, 100)).collect();
            let cap = cap_tiles * 100;
            let b = replay(Policy::Belady, cap, &trace);
            let l = replay(Policy::Lru, cap, &trace);
            prop_assert!(b.peak_bytes <= cap && l.peak_bytes <= cap);
            prop_assert!(b.bytes_decoded <= l.bytes_decoded, "belady {b:?} lru {l:?}");
            prop_assert_eq!(b.hits + b.misses, trace.len() as u64);
        }
    }

    #[test]
    fn cyclic_sweep_hand_case_and_too_small() {
        // A sweep over 4 tiles, twice, with room for 3: LRU misses every access. Belady
        // evicts tile 2 for tile 3 (2 is needed last), hits 0, 1, misses 2 (evicting 0,
        // never needed again), hits 3: 5 misses.
        let trace: Vec<(u32, u64)> = (0..8).map(|i| (i % 4, 10)).collect();
        assert_eq!(replay(Policy::Lru, 30, &trace).misses, 8);
        assert_eq!(replay(Policy::Belady, 30, &trace).misses, 5);
        let mut b: ReconstructionBuffer = ReconstructionBuffer::new(5, Policy::Lru, &[]);
        // A pinned tile is never evicted; when only pinned tiles could make room, the
        // access is refused and nothing changes.
        let mut p: ReconstructionBuffer = ReconstructionBuffer::new(20, Policy::Lru, &[]);
        p.access(id(0), 10).unwrap();
        p.access(id(1), 10).unwrap();
        let pin: HashMap<TileId, ()> = [(id(0), ())].into();
        assert_eq!(
            p.access_pinned(id(2), 10, &pin),
            Ok(Access::Miss {
                evicted: vec![id(1)]
            })
        );
        let pin: HashMap<TileId, ()> = [(id(0), ()), (id(2), ())].into();
        assert!(matches!(
            p.access_pinned(id(3), 10, &pin),
            Err(BufferError::AllPinned { .. })
        ));
        assert!(p.contains(id(0)) && p.contains(id(2)) && p.used() == 20);
        assert_eq!(
            b.access(id(0), 10),
            Err(BufferError::TooSmall {
                tile_bytes: 10,
                capacity: 5
            })
        );
        // Holding tiles: bytes and peak counted, contents handed back on eviction.
        let mut h: ReconstructionBuffer<Vec<f32>> =
            ReconstructionBuffer::new(100, Policy::Lru, &[]);
        h.insert(id(0), 40, vec![1.0; 10]);
        h.insert(id(1), 40, vec![2.0; 10]);
        assert_eq!((h.used(), h.stats().peak_bytes), (80, 80));
        assert_eq!(h.evict(id(0)), Some(vec![1.0; 10]));
        h.insert(id(2), 20, vec![3.0; 5]);
        assert_eq!((h.used(), h.stats().peak_bytes), (60, 80));
        assert_eq!(h.get(id(2)), Some(&vec![3.0; 5]));
        assert_eq!(h.drain().count(), 2);
        assert_eq!(h.used(), 0);
    }
}
