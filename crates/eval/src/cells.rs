//! The grids' cells: what `--grid quick|default|full` measures.

use crate::grid::{
    ActPolicy, ActRebuild, ActScore, ActSetting, Cell, GridError, Path, Sites, WeightSetting,
};
use sparsewire_metadata::{Criterion, Pattern};
use sparsewire_se::Rebuild;

/// The grids. `quick` runs in well under a minute; `default` is the sweep (under 10
/// minutes on 2 cores); `full` adds SparseGPT's per-layer byte budget (2-3 minutes more).
pub fn cells(grid: &str, criteria: Option<&[Criterion]>) -> Result<Vec<Cell>, GridError> {
    const GRID_CRITERIA: [Criterion; 4] = [
        Criterion::Magnitude,
        Criterion::Wanda,
        Criterion::SparseGpt,
        Criterion::Predictable,
    ];
    if let Some(c) = criteria
        .unwrap_or_default()
        .iter()
        .find(|c| !GRID_CRITERIA.contains(c))
    {
        return Err(GridError::Other(format!(
            "criterion {c} is not in the eval grid (the grid has no gradients): choose from \
             magnitude, wanda, sparsegpt, predictable"
        )));
    }
    let w = |sparsity, criterion, pattern, reconstruct| Cell {
        path: Path::Weights,
        weights: Some(WeightSetting {
            sparsity,
            target_ratio: None,
            criterion,
            pattern,
            reconstruct,
        }),
        activations: None,
    };
    let budget = |ratio, criterion, reconstruct| Cell {
        path: Path::Weights,
        weights: Some(WeightSetting {
            sparsity: None,
            target_ratio: Some(ratio),
            criterion,
            pattern: Pattern::Unstructured,
            reconstruct,
        }),
        activations: None,
    };
    let act_on = |policy, reconstruct, sites| Cell {
        path: Path::Activations,
        weights: None,
        activations: Some(ActSetting {
            policy,
            reconstruct,
            sites,
            score: ActScore::Magnitude,
        }),
    };
    let act = |policy, reconstruct| act_on(policy, reconstruct, Sites::All);
    let lossless = w(
        None,
        Criterion::Magnitude,
        Pattern::Unstructured,
        Rebuild::Zero,
    );
    let mut out = vec![lossless];
    match grid {
        "quick" => {
            out.push(w(
                Some(0.5),
                Criterion::Magnitude,
                Pattern::Unstructured,
                Rebuild::Zero,
            ));
            out.push(w(
                Some(0.5),
                Criterion::Wanda,
                Pattern::Unstructured,
                Rebuild::Auto,
            ));
            out.push(act(ActPolicy::KeepFraction(0.5), ActRebuild::Zero));
            out.push(act(ActPolicy::KeepFraction(0.5), ActRebuild::Dictionary));
            out.push(Cell {
                path: Path::Both,
                weights: Some(WeightSetting {
                    sparsity: Some(0.3),
                    target_ratio: None,
                    criterion: Criterion::Wanda,
                    pattern: Pattern::Unstructured,
                    reconstruct: Rebuild::Auto,
                }),
                activations: Some(ActSetting {
                    policy: ActPolicy::KeepFraction(0.7),
                    reconstruct: ActRebuild::Dictionary,
                    sites: Sites::All,
                    score: ActScore::Magnitude,
                }),
            });
        }
        "default" | "full" => {
            let crits = criteria.map(|c| c.to_vec()).unwrap_or_else(|| {
                vec![
                    Criterion::Magnitude,
                    Criterion::Wanda,
                    Criterion::SparseGpt,
                    Criterion::Predictable,
                ]
            });
            for &c in &crits {
                for s in [0.3, 0.5, 0.7, 0.9] {
                    for r in [
                        Rebuild::Zero,
                        Rebuild::Linear,
                        Rebuild::Learned,
                        Rebuild::Auto,
                    ] {
                        out.push(w(Some(s), c, Pattern::Unstructured, r));
                    }
                }
                for r in [
                    Rebuild::Zero,
                    Rebuild::Linear,
                    Rebuild::Learned,
                    Rebuild::Auto,
                ] {
                    out.push(w(Some(0.5), c, Pattern::NM { n: 2, m: 4 }, r));
                }
            }
            // Around 45% of the bf16 bytes: uniform sparsity just above 0.3, and per-layer
            // allocation under a byte budget (for SparseGPT only in the full grid: its
            // allocation runs it at every level of every layer, over two minutes).
            for c in [Criterion::SparseGpt, Criterion::Wanda] {
                if crits.contains(&c) {
                    out.push(w(Some(0.36), c, Pattern::Unstructured, Rebuild::Auto));
                    if c != Criterion::SparseGpt || grid == "full" {
                        out.push(budget(0.45, c, Rebuild::Auto));
                    }
                }
            }
            if crits.contains(&Criterion::SparseGpt) {
                out.push(w(
                    Some(0.4),
                    Criterion::SparseGpt,
                    Pattern::Unstructured,
                    Rebuild::Auto,
                ));
            }
            for k in [0.9, 0.7, 0.5, 0.3] {
                for r in [ActRebuild::Zero, ActRebuild::Dictionary] {
                    out.push(act(ActPolicy::KeepFraction(k), r));
                }
            }
            for t in [0.01, 0.05, 0.1] {
                out.push(act(ActPolicy::Threshold(t), ActRebuild::Zero));
            }
            // Spending the bytes where they matter: most of the LayerNorm outputs, little
            // of the post-GELU activations (two thirds of the bytes, the most tolerant).
            for (h, f, g) in [(0.9, 0.9, 0.35), (0.8, 0.8, 0.3), (0.9, 0.9, 0.2)] {
                let policy = ActPolicy::PerFamily {
                    hidden: h,
                    ffn_in: f,
                    ffn_act: g,
                };
                out.push(act(policy, ActRebuild::Dictionary));
            }
            // Which family tolerates it: one family at a time, half kept.
            for sites in [Sites::Hidden, Sites::FfnIn, Sites::FfnAct] {
                for r in [ActRebuild::Zero, ActRebuild::Dictionary] {
                    out.push(act_on(ActPolicy::KeepFraction(0.5), r, sites));
                }
            }
            for (s, k) in [(0.3, 0.7), (0.5, 0.5)] {
                out.push(Cell {
                    path: Path::Both,
                    weights: Some(WeightSetting {
                        sparsity: Some(s),
                        target_ratio: None,
                        criterion: Criterion::SparseGpt,
                        pattern: Pattern::Unstructured,
                        reconstruct: Rebuild::Auto,
                    }),
                    activations: Some(ActSetting {
                        policy: ActPolicy::KeepFraction(k),
                        reconstruct: ActRebuild::Dictionary,
                        sites: Sites::All,
                        score: ActScore::Magnitude,
                    }),
                });
            }
        }
        g => {
            return Err(GridError::Other(format!(
                "unknown grid {g:?} (quick, default, full)"
            )))
        }
    }
    Ok(out)
}
