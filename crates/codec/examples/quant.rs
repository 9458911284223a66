//! Compares quantiser cost with the order-0 entropy on a file's head histograms.
use sparsewire_codec::rans::Model;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut ent, mut cost, mut n_all) = (0f64, 0f64, 0u64);
    for (_, v) in st.tensors() {
        let (shift, vb) = match v.dtype() {
            safetensors::Dtype::BF16 => (5, 2),
            safetensors::Dtype::F32 => (21, 4),
            _ => continue,
        };
        let mut h = vec![0u64; 2048];
        for c in v.data().chunks_exact(vb) {
            let x = if vb == 2 {
                u16::from_le_bytes([c[0], c[1]]) as u32
            } else {
                u32::from_le_bytes([c[0], c[1], c[2], c[3]])
            };
            h[(x >> shift) as usize] += 1;
        }
        let n: u64 = h.iter().sum();
        n_all += n;
        ent += h
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| -(c as f64) * (c as f64 / n as f64).log2())
            .sum::<f64>();
        if let Some(m) = Model::from_counts(&h) {
            cost += m.cost_bits(&h).unwrap();
        }
    }
    println!(
        "entropy {:.4} bits/value, model cost {:.4} bits/value, excess {:.3}%",
        ent / n_all as f64,
        cost / n_all as f64,
        (cost / ent - 1.0) * 100.0
    );
}
