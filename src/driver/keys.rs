//! Key choice: which id an op addresses (uniform, zipfian, sequential) and the random values
//! it writes. Each worker has its own generator seeded from the workload's seed and the
//! worker's number, so a run's choices are reproducible and workers never share a lock.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

pub use crate::spec::Distribution;

/// Precomputed constants of the zipfian generator (the O(count) sum is done once).
#[derive(Debug, Clone, Copy)]
struct Zipf {
    n: f64,
    zetan: f64,
    alpha: f64,
    eta: f64,
    half_pow_theta: f64,
}

impl Zipf {
    fn new(count: u64, theta: f64) -> Zipf {
        let zetan: f64 = (1..=count).map(|i| 1.0 / (i as f64).powf(theta)).sum();
        let zeta2 = 1.0 + 0.5f64.powf(theta);
        let n = count as f64;
        Zipf {
            n,
            zetan,
            alpha: 1.0 / (1.0 - theta),
            eta: (1.0 - (2.0 / n).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
            half_pow_theta: 0.5f64.powf(theta),
        }
    }

    fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + self.half_pow_theta {
            return 1;
        }
        ((self.n * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64).min(self.n as u64 - 1)
    }
}

/// What every worker's chooser shares: the distribution's precomputed state.
#[derive(Debug, Clone)]
pub struct KeySpace {
    count: u64,
    kind: Distribution,
    zipf: Option<Zipf>,
    value_min: usize,
    value_max: usize,
    /// Random letters every value is a slice of, shared by every worker: an open loop may
    /// have thousands of workers, and values may be megabytes long.
    value_pool: Arc<[u8]>,
}

impl KeySpace {
    /// Ids `0..count` drawn by `kind`, values of `value_min..=value_max` bytes.
    pub fn new(count: u64, kind: Distribution, value_min: usize, value_max: usize) -> KeySpace {
        let count = count.max(1);
        let zipf = match kind {
            Distribution::Zipfian { theta } => Some(Zipf::new(count, theta)),
            _ => None,
        };
        let value_max = value_max.max(value_min);
        let value_pool = {
            // Values are slices of one random pool: random bytes without generating them
            // per op. The values' bytes carry no meaning, so the pool's seed is fixed.
            let mut rng = SmallRng::seed_from_u64(0xA5A5);
            let mut pool = vec![0u8; value_max * 2 + 64];
            rng.fill_bytes(&mut pool);
            for b in &mut pool {
                *b = b'a' + (*b % 26);
            }
            pool.into()
        };
        KeySpace { count, kind, zipf, value_min, value_max, value_pool }
    }

    /// Worker `worker` of `workers`'s chooser, seeded from `seed`.
    pub fn chooser(&self, seed: u64, worker: usize, workers: usize) -> KeyChooser {
        let mixed = seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        KeyChooser {
            value_pool: self.value_pool.clone(),
            space: self.clone(),
            rng: SmallRng::seed_from_u64(mixed),
            next_sequential: worker as u64 % self.count,
            stride: workers.max(1) as u64,
        }
    }
}

/// One worker's key and value generator.
pub struct KeyChooser {
    space: KeySpace,
    rng: SmallRng,
    next_sequential: u64,
    stride: u64,
    value_pool: Arc<[u8]>,
}

impl KeyChooser {
    /// The next id.
    pub fn next_id(&mut self) -> u64 {
        match self.space.kind {
            Distribution::Uniform => self.rng.random_range(0..self.space.count),
            Distribution::Zipfian { .. } => {
                let zipf = self.space.zipf.as_ref().expect("zipf state is built for zipfian");
                zipf.sample(self.rng.random::<f64>())
            }
            Distribution::Sequential => {
                let id = self.next_sequential;
                self.next_sequential = (self.next_sequential + self.stride) % self.space.count;
                id
            }
        }
    }

    /// A random value of the configured size.
    pub fn value(&mut self) -> &[u8] {
        let len = if self.space.value_min == self.space.value_max {
            self.space.value_min
        } else {
            self.rng.random_range(self.space.value_min..=self.space.value_max)
        };
        let start = self.rng.random_range(0..=self.value_pool.len() - len);
        &self.value_pool[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_ids_stay_in_range_and_are_reproducible() {
        let space = KeySpace::new(100, Distribution::Uniform, 8, 8);
        let a: Vec<u64> = (0..1000).scan(space.chooser(1, 0, 2), |c, _| Some(c.next_id())).collect();
        let b: Vec<u64> = (0..1000).scan(space.chooser(1, 0, 2), |c, _| Some(c.next_id())).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|&i| i < 100));
        let other: Vec<u64> = (0..1000).scan(space.chooser(1, 1, 2), |c, _| Some(c.next_id())).collect();
        assert_ne!(a, other, "workers draw different ids");
    }

    #[test]
    fn zipfian_is_skewed_towards_low_ids() {
        let space = KeySpace::new(10_000, Distribution::Zipfian { theta: 0.99 }, 8, 8);
        let mut c = space.chooser(7, 0, 1);
        let ids: Vec<u64> = (0..100_000).map(|_| c.next_id()).collect();
        assert!(ids.iter().all(|&i| i < 10_000));
        let hot = ids.iter().filter(|&&i| i < 10).count() as f64 / ids.len() as f64;
        // With theta 0.99 over 10k ids the ten hottest take roughly 30% of draws.
        assert!(hot > 0.2 && hot < 0.45, "hot share {hot}");
    }

    #[test]
    fn sequential_workers_interleave_without_overlap() {
        let space = KeySpace::new(10, Distribution::Sequential, 1, 1);
        let mut w0 = space.chooser(0, 0, 2);
        let mut w1 = space.chooser(0, 1, 2);
        let a: Vec<u64> = (0..5).map(|_| w0.next_id()).collect();
        let b: Vec<u64> = (0..5).map(|_| w1.next_id()).collect();
        assert_eq!(a, vec![0, 2, 4, 6, 8]);
        assert_eq!(b, vec![1, 3, 5, 7, 9]);
    }

    #[test]
    fn values_have_the_configured_sizes() {
        let space = KeySpace::new(10, Distribution::Uniform, 16, 32);
        let mut c = space.chooser(0, 0, 1);
        for _ in 0..1000 {
            let v = c.value().len();
            assert!((16..=32).contains(&v));
        }
    }
}
