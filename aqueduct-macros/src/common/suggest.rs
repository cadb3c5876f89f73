//! "Did you mean" hints for misspelled argument names.

/// The closest entry of `known` to `word`, if it is close enough to be a likely typo, or
/// a known synonym (`workers` for `nprocs`, say).
pub fn did_you_mean<'a>(
    word: &str,
    known: &[&'a str],
    synonyms: &[(&str, &'a str)],
) -> Option<&'a str> {
    let word = word.to_lowercase().replace('-', "_");
    let word = word.as_str();
    if let Some((_, target)) = synonyms.iter().find(|(alias, _)| *alias == word) {
        return Some(target);
    }
    known
        .iter()
        .map(|candidate| (edit_distance(word, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_and_synonyms() {
        let known = ["batch_size", "batch_timeout_ms", "nprocs"];
        assert_eq!(did_you_mean("batch_sise", &known, &[]), Some("batch_size"));
        assert_eq!(
            did_you_mean("workers", &known, &[("workers", "nprocs")]),
            Some("nprocs")
        );
        assert_eq!(did_you_mean("colour", &known, &[]), None);
    }
}
