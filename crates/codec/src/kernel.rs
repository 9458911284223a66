//! Which decode kernel runs: the scalar reference, AVX2, or AVX-512, chosen once per process.
//!
//! Every kernel produces the same bytes (tests decode every shared file and the property
//! corpus with each one the machine has and compare). What differs is speed, and that
//! depends on the machine more than on the instruction set: gathers are cheap on some
//! CPUs and slow on others (Zen 4 runs a 16-wide gather slower than two 8-wide ones; some
//! Intel microcode makes every gather slow). So [`Kernel::chosen`] does not trust the
//! feature flags alone: it times each available kernel on a synthetic BF16 tile (about a
//! millisecond, once) and keeps the fastest. `SPARSEWIRE_KERNEL=scalar|avx2|avx512`
//! overrides the choice (a kernel the CPU lacks is refused with a warning on stderr).
//!
//! | kernel   | rANS rounds (16- and 32-lane streams)              | symbols and plane merge |
//! |----------|----------------------------------------------------|-------------------------|
//! | `scalar` | one lane at a time (the reference; also 1 and 4 lanes) | scalar loops        |
//! | `avx2`   | 8-lane registers: gather, refill by a permute table | scalar loops           |
//! | `avx512` | 8-lane registers (two 8-wide gathers measured faster than one 16-wide on Zen 4), refill by `vpexpandd`; wide tables too; encoder rounds | 32 values per step: `vpermt2w` value->symbol, `vpermb` + `vpmultishiftqb` tail unpack, merged straight into the output; for 32-lane BF16 and F32 heads (raw tails and low bytes) inside the rounds |

use std::sync::OnceLock;

/// A decode kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The scalar reference every other kernel is tested against.
    Scalar,
    /// AVX2 rANS gathers.
    Avx2,
    /// AVX2 rANS gathers with AVX-512 (F, BW, VL, VBMI) symbol mapping and plane merges.
    Avx512,
}

impl Kernel {
    /// Every kernel, slowest first.
    pub const ALL: [Kernel; 3] = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];

    /// The kernel's name, as `SPARSEWIRE_KERNEL` and `bench --json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    /// Parses a name written by [`Kernel::name`].
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this CPU and build can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            // AVX-512 runs the AVX2 rANS rounds too.
            Kernel::Avx2 => crate::simd::avx2_available(),
            Kernel::Avx512 => crate::simd::avx2_available() && crate::simd::avx512_available(),
        }
    }

    /// The kernels this machine can run.
    pub fn available_kernels() -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|k| k.available()).collect()
    }

    /// The kernel decoding uses: `SPARSEWIRE_KERNEL` if set and available, else the
    /// fastest available one on a timed synthetic tile. Decided once per process.
    pub fn chosen() -> Kernel {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            if let Ok(name) = std::env::var("SPARSEWIRE_KERNEL") {
                match Kernel::from_name(&name) {
                    Some(k) if k.available() => return k,
                    Some(k) => eprintln!(
                        "sparsewire: SPARSEWIRE_KERNEL={} is not available on this CPU; choosing by measurement",
                        k.name()
                    ),
                    None => eprintln!(
                        "sparsewire: SPARSEWIRE_KERNEL={name:?} is not one of scalar, avx2, avx512; choosing by measurement"
                    ),
                }
            }
            calibrate()
        })
    }
}

impl Kernel {
    /// The kernel the rANS encoder runs: AVX-512 where available, unless
    /// `SPARSEWIRE_KERNEL` names another one. (Not timed: the calibration itself encodes
    /// its probe tile, and every kernel writes the same bytes.)
    pub fn for_encode() -> Kernel {
        static CHOSEN: OnceLock<Kernel> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let wanted = std::env::var("SPARSEWIRE_KERNEL")
                .ok()
                .and_then(|n| Kernel::from_name(&n))
                .unwrap_or(Kernel::Avx512);
            if wanted.available() {
                wanted
            } else {
                Kernel::Scalar
            }
        })
    }
}

/// Times each available kernel on a synthetic BF16 tile (64 Ki values with a weight-like
/// exponent spread), best of three, and returns the fastest.
fn calibrate() -> Kernel {
    let kernels = Kernel::available_kernels();
    if kernels.len() == 1 {
        return kernels[0];
    }
    let Some(probe) = crate::planes::Probe::new() else {
        return Kernel::Scalar;
    };
    let mut best = (f64::MAX, Kernel::Scalar);
    for _ in 0..3 {
        for &k in &kernels {
            let t = std::time::Instant::now();
            if probe.decode(k).is_err() {
                continue;
            }
            let s = t.elapsed().as_secs_f64();
            if s < best.0 {
                best = (s, k);
            }
        }
    }
    best.1
}
