//! The Rust forward pass against the reference activations recorded from the original
//! model (../shared/data): every `hidden.i`, `ffn_in.i`, `ffn_act.i` within 1e-4.

use sparsewire_eval::model::{Bert, Site};
fn read_tensors(
    p: &std::path::Path,
) -> Result<sparsewire_formats::TensorFile, sparsewire_formats::FormatError> {
    sparsewire_formats::input::InputFile::open(p)?.read_all()
}
use std::collections::HashMap;

mod common;

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data (or $SPARSEWIRE_DATA), absent when this crate was built"
)]
fn forward_matches_the_reference_activations() {
    let d = common::data_dir();
    // The config read from the model's own files is the built-in MiniLM geometry.
    let cfg =
        sparsewire_eval::model::BertConfig::from_dir(&d.join("minilm_l6_v2_tokenizer")).unwrap();
    assert_eq!(cfg, sparsewire_eval::model::BertConfig::minilm_l6());
    let model =
        Bert::minilm(&read_tensors(&d.join("minilm_l6_v2.f32.safetensors")).unwrap()).unwrap();
    let toks = read_tensors(&d.join("minilm_l6_v2_activations_tokens.safetensors")).unwrap();
    let get = |n: &str| toks.tensors.iter().find(|t| t.name == n).unwrap();
    let ints = |n: &str| -> Vec<i32> {
        get(n)
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let ids = ints("token_ids");
    let lens = ints("sentence_lengths");
    let reference = read_tensors(&d.join("minilm_l6_v2_activations.f32.safetensors")).unwrap();
    let mut got: HashMap<Site, Vec<f32>> = HashMap::new();
    let mut at = 0usize;
    for &len in &lens {
        let s: Vec<u32> = ids[at..at + len as usize]
            .iter()
            .map(|&i| i as u32)
            .collect();
        at += len as usize;
        let mut hook =
            |site: Site, v: &mut Vec<f32>| got.entry(site).or_default().extend_from_slice(v);
        model.forward(&s, Some(&mut hook)).unwrap();
    }
    assert_eq!(at, ids.len());
    for site in model.config().sites() {
        let want = reference
            .tensors
            .iter()
            .find(|t| t.name == site.name())
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let g = &got[&site];
        assert_eq!(g.len(), want.len(), "{}", site.name());
        let worst = g
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{}: max abs difference {worst}", site.name());
        eprintln!("{}: max abs difference {worst:.2e}", site.name());
    }
}
