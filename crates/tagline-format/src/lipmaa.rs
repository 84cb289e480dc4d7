//! Lipmaa skip links (Bamboo's scheme; SPEC.md §4.3).
//!
//! Entry `n` links to entry `lipmaa(n)` besides `n - 1`. Following lipmaa links
//! from any entry reaches entry 1 in O(log n) steps, and for any `m < n` there is
//! a path from `n` to `m` of O(log n) links (a "certificate"), so an entry can be
//! checked against a trusted head without fetching the whole feed.

/// The skip-link target of sequence number `n` (1-based). Returns 0 for `n <= 1`
/// (entry 1 has no links).
pub fn lipmaa(n: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let n = u128::from(n);
    let mut m: u128 = 1;
    let mut po3: u128 = 3;
    while m < n {
        po3 *= 3;
        m = (po3 - 1) / 2;
    }
    po3 /= 3;
    if m != n {
        let mut u = n;
        while u != 0 {
            m = (po3 - 1) / 2;
            po3 /= 3;
            u %= m;
        }
        if m != po3 {
            po3 = m;
        }
    }
    // n - po3 < n <= u64::MAX.
    u64::try_from(n - po3).unwrap_or(0)
}

/// Whether entry `n`'s header carries an explicit lipmaa link: only when it
/// differs from the backlink.
pub fn has_distinct_lipmaa(n: u64) -> bool {
    n > 1 && lipmaa(n) != n - 1
}

/// The sequence numbers on the lipmaa path from `n` down to 1, `n` excluded.
pub fn path_to_first(n: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut k = n;
    while k > 1 {
        k = lipmaa(k);
        out.push(k);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let expected = [
            (1, 0),
            (2, 1),
            (3, 2),
            (4, 1),
            (5, 4),
            (6, 5),
            (7, 6),
            (8, 4),
            (9, 8),
            (12, 8),
            (13, 4),
            (14, 13),
            (17, 13),
            (21, 17),
            (25, 21),
            (26, 13),
            (30, 26),
            (40, 13),
            (121, 40),
        ];
        for (n, l) in expected {
            assert_eq!(lipmaa(n), l, "lipmaa({n})");
        }
    }

    #[test]
    fn path_from_100000_is_short() {
        // Bamboo's published certificate path for 100,000.
        let path = path_to_first(100_000);
        assert_eq!(
            path,
            vec![
                99996, 99992, 99871, 99507, 98414, 88573, 29524, 9841, 3280, 1093, 364, 121, 40,
                13, 4, 1
            ]
        );
    }

    #[test]
    fn always_below_and_logarithmic() {
        for n in 2..20_000u64 {
            let l = lipmaa(n);
            assert!(l >= 1 && l < n, "lipmaa({n}) = {l}");
            assert!(path_to_first(n).len() <= 4 * 64, "path too long for {n}");
        }
        // Very large sequence numbers do not overflow.
        assert!(lipmaa(crate::limits::MAX_SEQ) < crate::limits::MAX_SEQ);
        assert!(lipmaa(u64::MAX) < u64::MAX);
    }
}
