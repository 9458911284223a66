//! The MLP rebuild predictor, fitted after the fact (`re::fit_mlp`) against trained on the
//! reconstruction loss (`sparsewire_train::rebuild::train_mlp`), on every matrix of a
//! real model pruned by magnitude per tensor.
//!
//! ```text
//! cargo run --release -p sparsewire-train --example mlp_rebuild -- \
//!     ../shared/data/ppocrv4_det.f32.safetensors [SPARSITY] [STEPS]
//! ```
//!
//! Prints, per tensor, the relative Frobenius error of zero-fill, of the learned ridge
//! predictor, of the post-hoc MLP and of the trained MLP (all as `re` rebuilds them),
//! then the medians of the ratios to zero-fill.

use sparsewire_formats::input::InputFile;
use sparsewire_metadata::view_2d;
use sparsewire_sparse::Mask;
use sparsewire_train::rebuild::{train_mlp, MlpTraining};
use std::path::Path;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        return Err("usage: mlp_rebuild FILE.safetensors [SPARSITY] [STEPS]".into());
    };
    let sparsity: f64 = args.get(1).map_or(Ok(0.5), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    if !(0.0..1.0).contains(&sparsity) {
        return Err(format!("sparsity {sparsity} is outside [0, 1)").into());
    }
    let file = InputFile::open(Path::new(path))?;
    let all = file.read_all()?;
    let start = Instant::now();
    let mut ratios: [Vec<f64>; 3] = Default::default();
    println!("tensor | zero | learned | mlp post hoc | mlp trained");
    for t in &all.tensors {
        let Some(w) = t.to_f32_vec() else { continue };
        let (rows, cols) = view_2d(&t.shape, t.numel());
        let (rows, cols) = (rows as usize, cols as usize);
        if rows < 2 || cols < 8 {
            continue;
        }
        // Magnitude, per tensor: drop the smallest `sparsity` of |w|.
        let mut mags: Vec<f32> = w.iter().map(|x| x.abs()).collect();
        let k = ((w.len() as f64) * sparsity) as usize;
        if k == 0 {
            continue;
        }
        let (_, th, _) = mags.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
        let th = *th;
        let mask = Mask::from_fn(w.len(), |i| w[i].abs() > th);
        let err = |m: &sparsewire_re::Reconstruction| -> Result<f64, Box<dyn std::error::Error>> {
            let mut v: Vec<f32> = (0..w.len())
                .map(|i| if mask.is_kept(i) { w[i] } else { 0.0 })
                .collect();
            sparsewire_re::rebuild_tensor(&mut v, mask.as_ref(), cols, m)?;
            let e: f64 = v
                .iter()
                .zip(&w)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum();
            let n: f64 = w.iter().map(|&b| (b as f64).powi(2)).sum();
            Ok((e / n.max(1e-300)).sqrt())
        };
        let o = MlpTraining {
            steps,
            ..Default::default()
        };
        let trained = train_mlp(&w, mask.as_ref(), cols, &o)?;
        let zero = err(&sparsewire_re::Reconstruction::Zero)?;
        let learned = err(&sparsewire_re::fit_learned(&w, mask.as_ref(), cols))?;
        let (post, tr) = (err(&trained.post_hoc)?, err(&trained.trained)?);
        println!(
            "{} | {zero:.5} | {learned:.5} | {post:.5} | {tr:.5}",
            t.name
        );
        if zero > 0.0 {
            for (r, e) in ratios.iter_mut().zip([learned, post, tr]) {
                r.push(e / zero);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let [l, p, t] = &mut ratios;
    println!(
        "{} tensors at {sparsity} sparsity, {steps} steps, {:.1} s: median error / zero-fill: learned {:.4}, mlp post hoc {:.4}, mlp trained {:.4}; trained below post hoc on {} of {}",
        l.len(),
        start.elapsed().as_secs_f64(),
        median(&mut l.clone()),
        median(&mut p.clone()),
        median(&mut t.clone()),
        p.iter().zip(t.iter()).filter(|(a, b)| b < a).count(),
        p.len()
    );
    Ok(())
}
