//! Shell words as the shell will see them: which parts are literal, which are expanded at run
//! time, and a canonical text form that deny-rule regexes are written against.

use tree_sitter::Node;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DynKind {
    Param,
    Command,
    Process,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    /// Quoted or backslash-escaped text: taken literally by the shell.
    Lit(String),
    /// Unquoted text: literal unless it holds glob characters, braces or a leading tilde.
    Bare(String),
    /// Expanded at run time; the string is how canonical text shows it.
    Dyn(DynKind, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub segs: Vec<Seg>,
    /// Byte range in the text the word was parsed from.
    pub span: (usize, usize),
}

/// Characters that canonical text shows unquoted when they are literal.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

pub(crate) fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(is_plain) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

impl Word {
    pub fn literal_text(text: &str, span: (usize, usize)) -> Word {
        Word {
            segs: vec![Seg::Lit(text.to_string())],
            span,
        }
    }

    fn push(&mut self, seg: Seg) {
        match (self.segs.last_mut(), seg) {
            (Some(Seg::Lit(a)), Seg::Lit(b)) => a.push_str(&b),
            (Some(Seg::Bare(a)), Seg::Bare(b)) => a.push_str(&b),
            (_, seg) => self.segs.push(seg),
        }
    }

    fn push_lit_char(&mut self, c: char) {
        match self.segs.last_mut() {
            Some(Seg::Lit(a)) => a.push(c),
            _ => self.segs.push(Seg::Lit(c.to_string())),
        }
    }

    fn push_bare_char(&mut self, c: char) {
        match self.segs.last_mut() {
            Some(Seg::Bare(a)) => a.push(c),
            _ => self.segs.push(Seg::Bare(c.to_string())),
        }
    }

    /// Unquoted source text: backslash escapes one character, backslash-newline vanishes.
    fn push_unquoted(&mut self, text: &str) {
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('\n') => {}
                    Some(n) => self.push_lit_char(n),
                    None => self.push_lit_char('\\'),
                }
            } else {
                self.push_bare_char(c);
            }
        }
    }

    /// Text inside double quotes: backslash only escapes `$ \` " \ newline`.
    fn push_dquoted(&mut self, text: &str) {
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.peek().copied() {
                    Some('\n') => {
                        chars.next();
                    }
                    Some(n @ ('$' | '`' | '"' | '\\')) => {
                        chars.next();
                        self.push_lit_char(n);
                    }
                    _ => self.push_lit_char('\\'),
                }
            } else {
                self.push_lit_char(c);
            }
        }
    }

    pub fn is_dynamic(&self) -> bool {
        self.segs.iter().any(|s| matches!(s, Seg::Dyn(..)))
    }

    pub fn has_dyn(&self, kind: DynKind) -> bool {
        self.segs
            .iter()
            .any(|s| matches!(s, Seg::Dyn(k, _) if *k == kind))
    }

    /// The word's value if it is known before running: no expansion, no glob, no brace
    /// expansion. A leading unquoted `~` is kept as `~` (callers treat it as a path prefix).
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Lit(s) => out.push_str(s),
                Seg::Bare(s) => {
                    if has_glob(s) {
                        return None;
                    }
                    out.push_str(s);
                }
                Seg::Dyn(..) => return None,
            }
        }
        if has_brace_expansion(&self.canonical()) {
            return None;
        }
        Some(out)
    }

    /// The text rules see: literal parts quoted only where needed, unquoted specials and
    /// expansions as written.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Lit(s) => out.push_str(&quote(s)),
                Seg::Bare(s) | Seg::Dyn(_, s) => out.push_str(s),
            }
        }
        if self.segs.is_empty() {
            out.push_str("''");
        }
        out
    }

    /// The word without a literal prefix (`--output=` of `--output=FILE`), if it has it.
    pub fn strip_literal_prefix(&self, prefix: &str) -> Option<Word> {
        let mut rest = prefix;
        let mut segs = Vec::with_capacity(self.segs.len());
        for seg in &self.segs {
            if rest.is_empty() {
                segs.push(seg.clone());
                continue;
            }
            let (text, lit) = match seg {
                Seg::Lit(s) => (s, true),
                Seg::Bare(s) => (s, false),
                Seg::Dyn(..) => return None,
            };
            let n = common_prefix(text, rest);
            if n < rest.len() && n < text.len() {
                return None;
            }
            rest = &rest[n..];
            let tail = text[n..].to_string();
            if !tail.is_empty() {
                segs.push(if lit { Seg::Lit(tail) } else { Seg::Bare(tail) });
            }
        }
        if !rest.is_empty() {
            return None;
        }
        Some(Word {
            segs,
            span: self.span,
        })
    }

    /// The literal text of the word if it starts with something literal, for option matching
    /// on words whose tail is dynamic (`--output=$DIR/x`).
    pub fn literal_head(&self) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Lit(s) | Seg::Bare(s) => out.push_str(s),
                Seg::Dyn(..) => break,
            }
        }
        out
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8())
}

fn has_glob(s: &str) -> bool {
    if s.contains(['*', '?']) {
        return true;
    }
    // `[` alone (the test command) is literal; `[abc]` is a bracket glob.
    s.find('[').is_some_and(|i| s[i + 1..].contains(']'))
}

/// Does canonical text hold an unquoted brace expansion such as `{a,b}` or `{1..3}`?
pub(crate) fn has_brace_expansion(canon: &str) -> bool {
    find_brace(canon.as_bytes(), 0).is_some()
}

/// Finds the first brace expansion at or after `from`: (open, close, comma positions).
fn find_brace(b: &[u8], from: usize) -> Option<(usize, usize, Vec<usize>)> {
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b'\'' => i = skip_quote(b, i),
            // `${...}` is a parameter expansion, never a brace expansion.
            b'{' if i > 0 && b[i - 1] == b'$' => i += 1,
            b'{' => {
                if let Some(found) = match_brace(b, i) {
                    return Some(found);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn skip_quote(b: &[u8], i: usize) -> usize {
    match b[i + 1..].iter().position(|&c| c == b'\'') {
        Some(p) => i + 1 + p + 1,
        None => b.len(),
    }
}

fn match_brace(b: &[u8], open: usize) -> Option<(usize, usize, Vec<usize>)> {
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                i = skip_quote(b, i);
                continue;
            }
            b'{' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b'}' => {
                let inner = &b[open + 1..i];
                let is_seq = commas.is_empty() && sequence_bounds(inner).is_some();
                if !commas.is_empty() || is_seq {
                    return Some((open, i, commas));
                }
                return None;
            }
            b',' if depth == 0 => commas.push(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn sequence_bounds(inner: &[u8]) -> Option<(i64, i64, bool)> {
    let s = std::str::from_utf8(inner).ok()?;
    let (a, b) = s.split_once("..")?;
    let b = b.split("..").next()?;
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        return Some((x, y, false));
    }
    let (mut ca, mut cb) = (a.chars(), b.chars());
    match (ca.next(), ca.next(), cb.next(), cb.next()) {
        (Some(x), None, Some(y), None) if x.is_ascii_alphabetic() && y.is_ascii_alphabetic() => {
            Some((x as i64, y as i64, true))
        }
        _ => None,
    }
}

/// Brace-expands canonical text like bash does; `None` past `limit` results.
pub(crate) fn expand_braces(canon: &str, limit: usize) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut work = vec![canon.to_string()];
    while let Some(s) = work.pop() {
        let Some((open, close, commas)) = find_brace(s.as_bytes(), 0) else {
            out.push(s);
            if out.len() > limit {
                return None;
            }
            continue;
        };
        let (pre, post) = (&s[..open], &s[close + 1..]);
        let mut alts = Vec::new();
        if commas.is_empty() {
            let (x, y, chars) = sequence_bounds(&s.as_bytes()[open + 1..close])?;
            if x.abs_diff(y) as usize > limit {
                return None;
            }
            let (lo, hi) = (x.min(y), x.max(y));
            for v in lo..=hi {
                let item = if chars {
                    char::from_u32(v as u32)
                        .map(String::from)
                        .unwrap_or_default()
                } else {
                    v.to_string()
                };
                alts.push(item);
            }
        } else {
            let mut start = open + 1;
            for &c in commas.iter().chain(std::iter::once(&close)) {
                alts.push(s[start..c].to_string());
                start = c + 1;
            }
        }
        if work.len() + alts.len() + out.len() > limit {
            return None;
        }
        for alt in alts.into_iter().rev() {
            work.push(format!("{pre}{alt}{post}"));
        }
    }
    Some(out)
}

/// Decodes the body of `$'...'`.
pub(crate) fn decode_ansi_c(body: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        let simple = match c {
            b'a' => Some(7),
            b'b' => Some(8),
            b'e' | b'E' => Some(27),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(11),
            b'\\' | b'\'' | b'"' | b'?' => Some(c),
            _ => None,
        };
        if let Some(v) = simple {
            out.push(v);
            continue;
        }
        match c {
            b'0'..=b'7' => {
                let mut v: u32 = (c - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                    v = v * 8 + (b[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' | b'u' | b'U' => {
                let max = match c {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let mut v: u32 = 0;
                let mut n = 0;
                while n < max && i < b.len() && b[i].is_ascii_hexdigit() {
                    v = v * 16 + (b[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                if n == 0 {
                    out.push(b'\\');
                    out.push(c);
                } else if c == b'x' {
                    out.push(v as u8);
                } else {
                    let ch = char::from_u32(v).unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            b'c' if i < b.len() => {
                out.push(b[i] & 0x1f);
                i += 1;
            }
            _ => {
                out.push(b'\\');
                out.push(c);
            }
        }
    }
    // Bash stops a $'..' string at a NUL byte.
    if let Some(p) = out.iter().position(|&x| x == 0) {
        out.truncate(p);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds a word from a tree-sitter node; `Err` names a node kind the policy cannot read.
pub(crate) fn from_node(node: Node, src: &str) -> Result<Word, String> {
    let mut w = Word {
        segs: Vec::new(),
        span: (node.start_byte(), node.end_byte()),
    };
    add_node(&mut w, node, src)?;
    Ok(w)
}

fn text<'s>(node: Node, src: &'s str) -> &'s str {
    src.get(node.start_byte()..node.end_byte()).unwrap_or("")
}

fn add_node(w: &mut Word, node: Node, src: &str) -> Result<(), String> {
    let t = text(node, src);
    match node.kind() {
        "word" | "regex" | "extglob_pattern" | "variable_name" | "brace_expression" => {
            w.push_unquoted(t)
        }
        "number" if node.named_child_count() == 0 => w.push(Seg::Bare(t.to_string())),
        "raw_string" => {
            let inner = t
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .unwrap_or("");
            w.push(Seg::Lit(inner.to_string()));
        }
        "ansi_c_string" => {
            let inner = t
                .strip_prefix("$'")
                .and_then(|s| s.strip_suffix('\''))
                .unwrap_or("");
            w.push(Seg::Lit(decode_ansi_c(inner)));
        }
        "string" => add_dquoted(w, node, src)?,
        "translated_string" | "concatenation" => {
            let mut pos = node.start_byte();
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                if child.start_byte() > pos {
                    w.push_unquoted(src.get(pos..child.start_byte()).unwrap_or(""));
                }
                if child.kind() == "$" && node.kind() == "translated_string" {
                    pos = child.end_byte();
                    continue;
                }
                if child.is_named() {
                    add_node(w, child, src)?;
                } else {
                    w.push_unquoted(text(child, src));
                }
                pos = child.end_byte();
            }
            if node.end_byte() > pos {
                w.push_unquoted(src.get(pos..node.end_byte()).unwrap_or(""));
            }
        }
        "simple_expansion" | "expansion" => w.push(Seg::Dyn(DynKind::Param, t.to_string())),
        "command_substitution" => w.push(Seg::Dyn(DynKind::Command, "$(...)".to_string())),
        "process_substitution" => {
            let shown = if t.starts_with('>') {
                ">(...)"
            } else {
                "<(...)"
            };
            w.push(Seg::Dyn(DynKind::Process, shown.to_string()));
        }
        "arithmetic_expansion" => w.push(Seg::Dyn(DynKind::Other, "$((...))".to_string())),
        "number"
        | "array"
        | "binary_expression"
        | "unary_expression"
        | "postfix_expression"
        | "parenthesized_expression"
        | "ternary_expression"
        | "subscript" => w.push(Seg::Dyn(DynKind::Other, t.to_string())),
        _ if !node.is_named() => w.push_unquoted(t),
        kind => return Err(kind.to_string()),
    }
    Ok(())
}

fn add_dquoted(w: &mut Word, node: Node, src: &str) -> Result<(), String> {
    let (start, end) = (node.start_byte() + 1, node.end_byte().saturating_sub(1));
    let mut pos = start;
    let mut cursor = node.walk();
    for child in node.named_children(&mut cursor) {
        if child.start_byte() > pos {
            w.push_dquoted(src.get(pos..child.start_byte()).unwrap_or(""));
        }
        if child.kind() == "string_content" {
            w.push_dquoted(text(child, src));
        } else {
            add_node(w, child, src)?;
        }
        pos = child.end_byte();
    }
    if end > pos {
        w.push_dquoted(src.get(pos..end).unwrap_or(""));
    }
    if w.segs.is_empty() {
        w.push(Seg::Lit(String::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_c() {
        assert_eq!(decode_ansi_c(r"\x72m"), "rm");
        assert_eq!(decode_ansi_c(r"\162\155"), "rm");
        assert_eq!(decode_ansi_c(r"a\tb\u00e9"), "a\tbé");
        assert_eq!(decode_ansi_c(r"x\0y"), "x");
    }

    #[test]
    fn braces() {
        assert_eq!(
            expand_braces("{rm,-rf,/}", 64),
            Some(vec!["rm".into(), "-rf".into(), "/".into()])
        );
        assert_eq!(
            expand_braces("a{b,c}d", 64),
            Some(vec!["abd".into(), "acd".into()])
        );
        assert_eq!(expand_braces("'{a,b}'", 64), Some(vec!["'{a,b}'".into()]));
        assert_eq!(expand_braces("{}", 64), Some(vec!["{}".into()]));
        assert_eq!(expand_braces("{1..3}", 64).map(|v| v.len()), Some(3));
        assert_eq!(expand_braces("{1..100000}", 64), None);
        assert!(has_brace_expansion("{a,b}"));
        assert!(!has_brace_expansion("'{a,b}'"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("/etc"), "/etc");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }
}
