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
//! The buffer is pure bookkeeping (ids and sizes): the real executor keeps the bytes beside
//! it, and the timing model drives the very same object with modelled clocks.

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

/// The buffer.
#[derive(Debug, Clone)]
pub struct ReconstructionBuffer {
    capacity: u64,
    used: u64,
    policy: Policy,
    /// Resident tiles and their sizes.
    resident: HashMap<TileId, u64>,
    /// Time of last use (LRU) per resident tile.
    last_use: HashMap<TileId, u64>,
    /// For Belady: positions of every tile in the schedule, and where we are in it.
    uses: HashMap<TileId, Vec<u64>>,
    now: u64,
    stats: BufferStats,
}

impl ReconstructionBuffer {
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
            last_use: HashMap::new(),
            uses,
            now: 0,
            stats: BufferStats {
                capacity_bytes: capacity,
                ..BufferStats::default()
            },
        }
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

    /// Accesses tile `id` of `bytes` bytes: a hit, or a miss with what was evicted.
    pub fn access(&mut self, id: TileId, bytes: u64) -> Result<Access, BufferError> {
        self.access_pinned(id, bytes, &|_| false)
    }

    /// As [`Self::access`], never evicting a tile for which `pinned` is true (tiles being
    /// multiplied or awaited). Errs with [`BufferError::AllPinned`] when the room cannot
    /// be made without evicting one.
    pub fn access_pinned(
        &mut self,
        id: TileId,
        bytes: u64,
        pinned: &dyn Fn(TileId) -> bool,
    ) -> Result<Access, BufferError> {
        if bytes > self.capacity {
            return Err(BufferError::TooSmall {
                tile_bytes: bytes,
                capacity: self.capacity,
            });
        }
        let result = if self.resident.contains_key(&id) {
            self.stats.hits += 1;
            Access::Hit
        } else {
            // Check first that unpinned tiles free enough room, so a refusal changes nothing.
            let pinned_bytes: u64 = self
                .resident
                .iter()
                .filter(|(&k, _)| pinned(k))
                .map(|(_, &b)| b)
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
                let candidates = self.resident.keys().filter(|&&k| !pinned(k));
                let victim = match self.policy {
                    Policy::Belady => {
                        // Farthest next use; ties (e.g. never used again) by id, so the
                        // choice is deterministic.
                        let by_next: BTreeSet<(std::cmp::Reverse<u64>, TileId)> = candidates
                            .map(|&k| (std::cmp::Reverse(self.next_use(k)), k))
                            .collect();
                        by_next.iter().next().map(|&(_, k)| k)
                    }
                    Policy::Lru => candidates.min_by_key(|&&k| (self.last_use[&k], k)).copied(),
                };
                let v = victim.expect("room was checked before evicting");
                self.used -= self.resident.remove(&v).expect("resident");
                self.last_use.remove(&v);
                self.stats.evictions += 1;
                evicted.push(v);
            }
            self.resident.insert(id, bytes);
            self.used += bytes;
            self.stats.peak_bytes = self.stats.peak_bytes.max(self.used);
            Access::Miss { evicted }
        };
        self.last_use.insert(id, self.now);
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
        let mut b = ReconstructionBuffer::new(cap, policy, &schedule);
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
        let mut b = ReconstructionBuffer::new(5, Policy::Lru, &[]);
        assert_eq!(
            b.access(id(0), 10),
            Err(BufferError::TooSmall {
                tile_bytes: 10,
                capacity: 5
            })
        );
    }
}
