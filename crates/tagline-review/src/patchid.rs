//! Patch ids as `git patch-id --stable` computes them, without a repository:
//! a SHA-1 over each file's diff with all white space removed and line numbers
//! ignored, the per-file hashes added up (so file order does not matter).
//! Two patches with the same id make the same change, whatever their base,
//! which is what carries a Reviewed-by from vN to an unchanged patch of vN+1.

use sha1::{Digest, Sha1};

/// The stable patch id (40 hex digits) of the diff in `patch` (a format-patch
/// mail or a bare diff), or `None` when it holds no diff.
pub fn stable(patch: &str) -> Option<String> {
    let mut result = [0u8; 20];
    let mut ctx = Sha1::new();
    let mut patchlen = 0usize;
    let (mut before, mut after): (i64, i64) = (-1, -1);
    let mut binary = false;
    let (mut pre_oid, mut post_oid) = (String::new(), String::new());

    let flush = |ctx: &mut Sha1, result: &mut [u8; 20]| {
        let hash = std::mem::take(ctx).finalize();
        let mut carry: u16 = 0;
        for (r, h) in result.iter_mut().zip(hash.iter()) {
            carry += u16::from(*r) + u16::from(*h);
            *r = carry as u8;
            carry >>= 8;
        }
    };

    for raw in patch.split_inclusive('\n') {
        let line = raw;
        // "\ No newline at end of file" and the like.
        if line.starts_with("\\ ") && line.len() > 12 {
            continue;
        }
        // A line holding an object id (after "commit " or "From ", or at the
        // start) begins the next patch.
        let p = line
            .strip_prefix("commit ")
            .or_else(|| line.strip_prefix("From "))
            .unwrap_or(line);
        if p.len() >= 40 && p.bytes().take(40).all(|b| b.is_ascii_hexdigit()) {
            if patchlen > 0 {
                break;
            }
            continue;
        }
        if patchlen == 0 && !line.starts_with("diff ") {
            continue;
        }
        if before == -1 {
            if line.starts_with("GIT binary patch") || line.starts_with("Binary files") {
                binary = true;
                before = 0;
                ctx.update(pre_oid.as_bytes());
                ctx.update(post_oid.as_bytes());
                flush(&mut ctx, &mut result);
                continue;
            } else if let Some(rest) = line.strip_prefix("index ") {
                if let Some(dots) = rest.find("..") {
                    pre_oid = rest.get(..dots).unwrap_or("").to_string();
                    let tail = rest.get(dots + 2..).unwrap_or("");
                    post_oid = tail.split([' ', '\n']).next().unwrap_or("").to_string();
                }
                continue;
            } else if line.starts_with("--- ") {
                before = 1;
                after = 1;
            } else if !line.starts_with(|c: char| c.is_ascii_alphabetic()) {
                break;
            }
        }
        if binary {
            if line.starts_with("diff ") {
                binary = false;
                before = -1;
            }
            continue;
        }
        if before == 0 && after == 0 {
            if line.starts_with("@@ -") {
                (before, after) = hunk_counts(line);
                continue;
            }
            if !line.starts_with("diff ") {
                break;
            }
            flush(&mut ctx, &mut result);
            before = -1;
            after = -1;
        }
        if line.starts_with('-') || line.starts_with(' ') {
            before -= 1;
        }
        if line.starts_with('+') || line.starts_with(' ') {
            after -= 1;
        }
        let squeezed: Vec<u8> = line
            .bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != 0x0b)
            .collect();
        patchlen += squeezed.len();
        ctx.update(&squeezed);
    }
    if patchlen == 0 {
        return None;
    }
    flush(&mut ctx, &mut result);
    Some(result.iter().map(|b| format!("{b:02x}")).collect())
}

/// `@@ -a[,b] +c[,d] @@` → (b, d), each 1 when omitted.
fn hunk_counts(line: &str) -> (i64, i64) {
    let count = |spec: Option<&str>| -> i64 {
        spec.map(|s| s.split_once(',').map_or(1, |(_, n)| n.parse().unwrap_or(1)))
            .unwrap_or(1)
    };
    let mut parts = line.split_whitespace().skip(1);
    let old = parts.next().and_then(|p| p.strip_prefix('-'));
    let new = parts.next().and_then(|p| p.strip_prefix('+'));
    (count(old), count(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(hunk_counts("@@ -1,3 +1,4 @@ fn x"), (3, 4));
        assert_eq!(hunk_counts("@@ -5 +5 @@"), (1, 1));
        assert_eq!(hunk_counts("@@ -0,0 +1 @@"), (0, 1));
    }

    #[test]
    fn no_diff_no_id() {
        assert_eq!(stable("just a message\n"), None);
    }
}
