//! Cutting text to a byte and line budget at line boundaries when it can, and never inside a
//! UTF-8 character, so what a model reads is whole lines plus a note naming what was left out.

/// A head and a tail of a text, the middle left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clipped<'a> {
    pub head: &'a str,
    pub tail: &'a str,
    /// Byte range `[from, to)` of the input that was left out (empty when nothing was).
    pub omitted_from: usize,
    pub omitted_to: usize,
    pub omitted_lines: usize,
}

impl Clipped<'_> {
    pub fn clipped(&self) -> bool {
        self.omitted_to > self.omitted_from
    }
}

fn is_continuation(byte: Option<&u8>) -> bool {
    byte.is_some_and(|b| b & 0xc0 == 0x80)
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// Lines of a text, the last one counted even without its newline.
pub fn line_count(text: &str) -> usize {
    newlines(text.as_bytes()) + usize::from(!text.is_empty() && !text.ends_with('\n'))
}

/// Where a head of at most `max_bytes` / `max_lines` ends: after a newline when one is in its
/// second half, else at the last whole character.
fn head_cut(buf: &[u8], max_bytes: usize, max_lines: usize) -> usize {
    let limit = buf.len().min(max_bytes);
    let mut lines = 0;
    let mut last_newline = None;
    for (i, &b) in buf[..limit].iter().enumerate() {
        if b == b'\n' {
            lines += 1;
            last_newline = Some(i);
            if lines >= max_lines {
                return i + 1;
            }
        }
    }
    if limit == buf.len() {
        return limit;
    }
    if let Some(at) = last_newline.filter(|&at| at >= limit / 2) {
        return at + 1;
    }
    let mut cut = limit;
    while cut > 0 && is_continuation(buf.get(cut)) {
        cut -= 1;
    }
    cut
}

/// Where a tail of at most `max_bytes` / `max_lines` starts: at a line start when one is in
/// its second half, else at the first whole character.
fn tail_cut(buf: &[u8], max_bytes: usize, max_lines: usize) -> usize {
    let limit = buf.len().saturating_sub(max_bytes);
    // A trailing newline does not open a line of its own.
    let end = if buf.last() == Some(&b'\n') {
        buf.len() - 1
    } else {
        buf.len()
    };
    let mut lines = 0;
    let mut first_newline = None;
    for i in (limit..end).rev() {
        if buf[i] == b'\n' {
            lines += 1;
            first_newline = Some(i);
            if lines >= max_lines {
                return i + 1;
            }
        }
    }
    if limit == 0 {
        return 0;
    }
    if let Some(at) = first_newline.filter(|&at| at < buf.len() - (buf.len() - limit) / 2) {
        return at + 1;
    }
    let mut cut = limit;
    while cut < buf.len() && is_continuation(buf.get(cut)) {
        cut += 1;
    }
    cut
}

/// Head and tail of `text` within `max_bytes` / `max_lines`; the head gets `head_share` of
/// the budget.
pub fn head_tail(text: &str, max_bytes: usize, max_lines: usize, head_share: f64) -> Clipped<'_> {
    let buf = text.as_bytes();
    if buf.len() <= max_bytes && line_count(text) <= max_lines {
        return Clipped {
            head: text,
            tail: "",
            omitted_from: buf.len(),
            omitted_to: buf.len(),
            omitted_lines: 0,
        };
    }
    let head_bytes = ((max_bytes as f64 * head_share) as usize).max(1);
    let head_lines = ((max_lines as f64 * head_share) as usize).max(1);
    let h = head_cut(buf, head_bytes, head_lines);
    let t = tail_cut(
        buf,
        max_bytes.saturating_sub(head_bytes).max(1),
        max_lines.saturating_sub(head_lines + 1).max(1),
    )
    .max(h);
    Clipped {
        head: &text[..h],
        tail: &text[t..],
        omitted_from: h,
        omitted_to: t,
        omitted_lines: newlines(&buf[h..t]),
    }
}

/// Only a head (for pages read in order): the text kept, which is `text[..kept.len()]`.
pub fn head(text: &str, max_bytes: usize, max_lines: usize) -> &str {
    &text[..head_cut(text.as_bytes(), max_bytes, max_lines)]
}

/// Splits `budget` between items needing `needs`: small ones get what they need, the rest
/// share what is left equally. Every item gets at least 1.
pub fn share(needs: &[usize], budget: usize) -> Vec<usize> {
    let mut out = vec![0; needs.len()];
    let mut left = budget;
    let mut open: Vec<usize> = (0..needs.len()).collect();
    while !open.is_empty() {
        let each = left / open.len();
        let (small, rest): (Vec<usize>, Vec<usize>) = open.iter().partition(|&&i| needs[i] <= each);
        if small.is_empty() {
            for &i in &open {
                out[i] = each;
            }
            break;
        }
        for &i in &small {
            out[i] = needs[i];
            left -= needs[i];
        }
        open = rest;
    }
    out.into_iter().map(|v| v.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        let c = head_tail("a\nb\n", 100, 10, 0.4);
        assert_eq!(c.head, "a\nb\n");
        assert!(!c.clipped());
    }

    #[test]
    fn long_text_keeps_whole_lines_at_both_ends() {
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let c = head_tail(&text, 1000, 50, 0.4);
        assert!(c.clipped());
        assert!(c.head.starts_with("line 0\n") && c.head.ends_with('\n'));
        assert!(c.tail.starts_with("line ") && c.tail.ends_with("line 999\n"));
        assert_eq!(
            &text[c.omitted_from..c.omitted_to].lines().count(),
            &c.omitted_lines
        );
        assert!(line_count(c.head) + line_count(c.tail) <= 50);
        assert!(c.head.len() + c.tail.len() <= 1000);
    }

    #[test]
    fn never_cuts_inside_a_character() {
        let text = "é".repeat(5000);
        let c = head_tail(&text, 1001, 10, 0.4);
        assert!(c.clipped());
        // Slicing a &str at a non-boundary would have panicked; check the sizes instead.
        assert!(c.head.len().is_multiple_of(2) && c.tail.len().is_multiple_of(2));
        assert_eq!(head("éé", 3, 10), "é");
    }

    #[test]
    fn share_gives_small_needs_in_full() {
        assert_eq!(share(&[10, 1000], 500), vec![10, 490]);
        assert_eq!(share(&[1000, 1000], 500), vec![250, 250]);
        assert_eq!(share(&[0], 10), vec![1]);
    }
}
