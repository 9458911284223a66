//! The evaluation sentences: paraphrase pairs written for the project
//! (`data/sentences.tsv`, compiled in), tokenized with the model's own tokenizer.

use std::path::Path;

/// The sentence file: `#` comments, then one tab-separated paraphrase pair per line.
pub const TSV: &str = include_str!("../data/sentences.tsv");

/// Every sentence, pairs kept adjacent (`2i`, `2i + 1`).
pub fn sentences() -> Vec<&'static str> {
    TSV.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .flat_map(|l| l.split('\t'))
        .collect()
}

/// Token ids of every sentence (with `[CLS]` and `[SEP]`, no padding, at most 512).
pub fn tokenize(tokenizer_json: &Path) -> Result<Vec<Vec<u32>>, String> {
    let mut t = tokenizers::Tokenizer::from_file(tokenizer_json)
        .map_err(|e| format!("{}: {e}", tokenizer_json.display()))?;
    t.with_padding(None);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 512,
        ..Default::default()
    }))
    .map_err(|e| e.to_string())?;
    sentences()
        .iter()
        .map(|s| {
            t.encode(*s, true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| format!("tokenizing {s:?}: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_least_200_sentences_in_pairs() {
        let s = super::sentences();
        assert!(s.len() >= 200 && s.len().is_multiple_of(2), "{}", s.len());
        assert!(s.iter().all(|x| x.len() > 10 && !x.contains('\t')));
    }
}
