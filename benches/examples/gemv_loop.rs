//! Batch-1 tile multiply loop for A/B runs of the MMU kernels:
//! `cargo run --release -p sparsewire-benches --example gemv_loop -- [ROWS] [COLS] [ROUNDS]`.
//!
//! Builds one `ROWS x COLS` bf16 tile (default 168 x 384: 129 KB dense, in L2) of smooth
//! weights, its 44%-kept sparse form (a seeded random mask) and an input, then times
//! `tile_mmo` on the dense and the sparse form in alternation, ROUNDS rounds (default 40)
//! of about 5 M weights each, and prints the best round of each in G weights/s (dense
//! weights, so the two compare per output) with the cycles per 32-column chunk at the
//! clock given by `GHZ` (default 2.95, the Emerald Rapids VM's). Alternating inside one
//! process keeps the two forms under the same machine state: a shared host's speed drifts
//! between runs by more than the changes being compared. Build two binaries and
//! alternate them to compare kernels.

use sparsewire_accel::mmu::{tile_mmo, TileShape, Weights};
use sparsewire_metadata::Dtype;
use sparsewire_sparse::{Mask, SparseTile, Values};
use std::time::Instant;

fn arg(
    args: &mut impl Iterator<Item = String>,
    name: &str,
    default: usize,
) -> Result<usize, String> {
    match args.next() {
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{name} {v:?}: expected a whole number >= 1")),
        },
        None => Ok(default),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows = arg(&mut args, "ROWS", 168)?;
    let cols = arg(&mut args, "COLS", 384)?;
    let rounds = arg(&mut args, "ROUNDS", 40)?;
    let ghz: f64 = std::env::var("GHZ").map_or(Ok(2.95), |g| g.parse())?;
    let n = rows
        .checked_mul(cols)
        .filter(|&n| n <= 1 << 28)
        .ok_or("ROWS x COLS must be at most 2^28")?;
    let dense: Vec<u8> = (0..n)
        .flat_map(|i| half::bf16::from_f32(((i as f32) * 0.37).sin() * 0.1).to_le_bytes())
        .collect();
    let mut state = 12345u64;
    let mask = Mask::from_fn(n, |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Two of four 2-bit draws: 1 - (3/4)^2 = 43.75% kept.
        (state & (state >> 8) & 1) == 1 || (state >> 16) & (state >> 24) & 1 == 1
    });
    let sparse = SparseTile::from_dense(rows, cols, Dtype::BF16, &dense, mask)?;
    let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.1).cos()).collect();
    let s = TileShape {
        rows,
        cols,
        col0: 0,
        n: cols,
        batch: 1,
    };
    let forms = [
        (
            "dense bf16",
            Weights::Stored(Values::Dense {
                dtype: Dtype::BF16,
                bytes: &dense,
            }),
        ),
        (
            "sparse bf16",
            Weights::Stored(Values::Sparse(sparse.as_ref())),
        ),
    ];
    let reps = (5_000_000 / n).max(3);
    let mut out = vec![0f32; rows];
    let mut scratch = Vec::new();
    let mut best = [f64::MAX; 2];
    for _ in 0..rounds {
        for (b, (_, w)) in best.iter_mut().zip(&forms) {
            let t = Instant::now();
            for _ in 0..reps {
                tile_mmo(*w, s, &x, &mut out, &mut scratch)?;
            }
            *b = b.min(t.elapsed().as_secs_f64() / reps as f64);
        }
    }
    std::hint::black_box(&out);
    println!(
        "{rows} x {cols} tile, {} of {n} kept, best of {rounds} rounds of {reps}:",
        sparse.values().len() / 2
    );
    for (b, (name, _)) in best.iter().zip(&forms) {
        println!(
            "  {name:>12}: {:6.2} G weights/s, {:.2} cycles a 32-column chunk at {ghz} GHz",
            n as f64 / b / 1e9,
            b * ghz * 1e9 / (n as f64 / 32.0)
        );
    }
    Ok(())
}
