//! Body of the `rebuild` cargo-fuzz target (`fuzz/`), here so that a normal test replays its
//! corpus on stable Rust. A stream's header carries reconstruction parameters (learned
//! coefficients, dictionary entries, kernel sizes, channel combinations) that an attacker
//! can set to anything: every method must rebuild or refuse with a typed error, never
//! panic or read out of bounds, on a tile, a block of rows or a whole tensor.

use crate::{rebuild_rows, rebuild_tensor, rebuild_tile, Reconstruction, TilePlace};
use sparsewire_metadata::{ChannelCombination, Dtype};
use sparsewire_sparse::{Mask, SparseTile, Values};

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            f32::from_le_bytes(w)
        })
        .collect()
}

/// Arbitrary bytes as a method with parameters, a mask and a place (see the module docs).
pub fn rebuild(data: &[u8]) {
    let [kind, r, c, col0, a, b, rest @ ..] = data else {
        return;
    };
    let (rows, cols) = (1 + (*r & 7) as usize, 1 + (*c & 31) as usize);
    let n = rows * cols;
    let method = match kind % 7 {
        0 => Reconstruction::Zero,
        1 => Reconstruction::Linear,
        2 => Reconstruction::Learned {
            params: f32s(&rest[..rest.len().min(4 * (*a as usize % 6))]),
        },
        3 => Reconstruction::Dictionary {
            entry_len: *a as u32,
            entries: f32s(rest),
        },
        4 => Reconstruction::Spatial {
            kh: *a as u32 % 5,
            kw: *b as u32 % 5,
        },
        5 => Reconstruction::Mlp {
            hidden: *a as u32 % 4,
            params: f32s(&rest[..rest.len().min(4 * (*b as usize % 40))]),
        },
        _ => Reconstruction::Channels {
            combinations: rest
                .chunks(3)
                .map(|x| ChannelCombination {
                    row: x[0] as u32 % 12,
                    sources: x.iter().skip(1).map(|&s| s as u32 % 12).collect(),
                    coefs: vec![0.5; (x.len() + *b as usize) % 3],
                })
                .collect(),
        },
    };
    let mask = Mask::from_fn(n, |i| {
        rest.get(i % rest.len().max(1))
            .is_some_and(|x| x >> (i % 8) & 1 == 1)
    });
    let values: Vec<u8> = (0..n)
        .flat_map(|i| ((i as f32) * 0.1).to_le_bytes())
        .collect();
    let Ok(t) = SparseTile::from_dense(rows, cols, Dtype::F32, &values, mask.clone()) else {
        return;
    };
    let place = TilePlace {
        col0: *col0 as usize % 64,
        full_cols: cols + (*b as usize % 3) * cols,
    };
    let mut out = Vec::new();
    let _ = rebuild_tile(Values::Sparse(t.as_ref()), &method, place, &mut out);
    let mut v: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let _ = rebuild_rows(&mut v, mask.as_ref(), cols, &method);
    let _ = rebuild_tensor(&mut v, mask.as_ref(), cols, &method);
    // A mask of the wrong length is an error too.
    let _ = rebuild_rows(&mut v[..n - 1], mask.as_ref(), cols, &method);
}
