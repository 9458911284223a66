//! The evaluation sentences: by default paraphrase pairs written for the project
//! (`data/sentences.tsv`, compiled in), or a user's file of one sentence per line;
//! tokenized with the model's own tokenizer.

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

/// The most sentences a file may give (each is embedded once per cell).
pub const MAX_SENTENCES: usize = 100_000;

/// Reads a text file of one sentence per line (UTF-8; blank lines skipped, surrounding
/// white space trimmed; at most `limit` sentences are taken, in order). Needs at least
/// two sentences, since nearest-neighbour agreement needs a neighbour.
pub fn read_lines(path: &Path, limit: usize) -> Result<Vec<String>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text =
        String::from_utf8(text).map_err(|e| format!("{}: not UTF-8 text ({e})", path.display()))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(limit)
        .map(String::from)
        .collect();
    if lines.len() < 2 {
        return Err(format!(
            "{}: {} sentence(s); at least 2 are needed (one per line)",
            path.display(),
            lines.len()
        ));
    }
    Ok(lines)
}

/// Token ids of every sentence (with `[CLS]` and `[SEP]`, no padding, truncated to
/// `max_len` tokens, the model's positions).
pub fn tokenize<S: AsRef<str>>(
    tokenizer_json: &Path,
    sentences: &[S],
    max_len: usize,
) -> Result<Vec<Vec<u32>>, String> {
    Ok(tokenize_counted(tokenizer_json, sentences, max_len)?.0)
}

/// [`tokenize`], and how many sentences were longer than `max_len` tokens and truncated.
pub fn tokenize_counted<S: AsRef<str>>(
    tokenizer_json: &Path,
    sentences: &[S],
    max_len: usize,
) -> Result<(Vec<Vec<u32>>, usize), String> {
    let mut t = tokenizers::Tokenizer::from_file(tokenizer_json)
        .map_err(|e| format!("{}: {e}", tokenizer_json.display()))?;
    t.with_padding(None);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max_len,
        ..Default::default()
    }))
    .map_err(|e| e.to_string())?;
    let mut truncated = 0;
    let ids = sentences
        .iter()
        .map(|s| {
            let s = s.as_ref();
            let e = t
                .encode(s, true)
                .map_err(|e| format!("tokenizing {s:?}: {e}"))?;
            if !e.get_overflowing().is_empty() {
                truncated += 1;
            }
            Ok(e.get_ids().to_vec())
        })
        .collect::<Result<_, String>>()?;
    Ok((ids, truncated))
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_least_200_sentences_in_pairs() {
        let s = super::sentences();
        assert!(s.len() >= 200 && s.len().is_multiple_of(2), "{}", s.len());
        assert!(s.iter().all(|x| x.len() > 10 && !x.contains('\t')));
    }

    #[test]
    fn a_sentence_file_needs_two_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.txt");
        std::fs::write(&p, "  one sentence  \n\n").unwrap();
        let e = super::read_lines(&p, 10).unwrap_err();
        assert!(e.contains("at least 2"), "{e}");
        std::fs::write(&p, "a\n\n  b \nc\n").unwrap();
        assert_eq!(super::read_lines(&p, 2).unwrap(), ["a", "b"]);
        std::fs::write(&p, [b'a', b'\n', 0xff, b'\n']).unwrap();
        assert!(super::read_lines(&p, 10).unwrap_err().contains("UTF-8"));
    }
}
