//! Just enough of a sed script reader to find GNU sed's command execution (`e`, `s///e`) and
//! file writes (`w FILE`, `s///w FILE`).

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SedEffects {
    pub executes: bool,
    pub writes: Vec<String>,
}

pub(crate) fn scan(script: &str) -> SedEffects {
    let mut fx = SedEffects::default();
    let b: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < b.len() {
        i = skip_blank_and_separators(&b, i);
        i = skip_address(&b, i);
        while i < b.len() && (b[i] == ' ' || b[i] == '\t' || b[i] == '!') {
            i += 1;
        }
        let Some(&cmd) = b.get(i) else { break };
        i += 1;
        match cmd {
            'e' => {
                fx.executes = true;
                i = skip_to_eol(&b, i);
            }
            'w' | 'W' => {
                let (file, next) = read_filename(&b, i);
                fx.writes.push(file);
                i = next;
            }
            's' | 'y' => {
                let Some(&delim) = b.get(i) else { break };
                if delim == '\n' || delim == '\\' {
                    break;
                }
                i += 1;
                // Both `s` and `y` have two delimited parts.
                for _ in 0..2 {
                    while i < b.len() && b[i] != delim {
                        if b[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    i += 1;
                }
                if cmd == 's' {
                    while i < b.len() && !matches!(b[i], ';' | '\n' | '}' | '#') {
                        match b[i] {
                            'e' => fx.executes = true,
                            'w' => {
                                let (file, next) = read_filename(&b, i + 1);
                                fx.writes.push(file);
                                i = next;
                                continue;
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                }
            }
            // Commands whose argument runs to the end of the line.
            'a' | 'i' | 'c' | 'r' | 'R' | 'b' | 't' | 'T' | ':' | '#' | 'q' | 'Q' | 'l' | 'L'
            | 'v' | 'F' | 'z' => {
                i = skip_to_eol_or_semicolon(
                    &b,
                    i,
                    matches!(cmd, 'a' | 'i' | 'c' | 'r' | 'R' | '#'),
                )
            }
            _ => {}
        }
    }
    fx
}

fn skip_blank_and_separators(b: &[char], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], ' ' | '\t' | '\n' | ';' | '{' | '}') {
        i += 1;
    }
    i
}

fn skip_address(b: &[char], mut i: usize) -> usize {
    for _ in 0..2 {
        match b.get(i) {
            Some(c) if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == '~') {
                    i += 1;
                }
            }
            Some('$') => i += 1,
            Some(&d) if d == '/' || d == '\\' => {
                let delim = if d == '\\' {
                    i += 1;
                    match b.get(i) {
                        Some(&c) => c,
                        None => return i,
                    }
                } else {
                    d
                };
                i += 1;
                while i < b.len() && b[i] != delim {
                    if b[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                while i < b.len() && matches!(b[i], 'I' | 'M') {
                    i += 1;
                }
            }
            _ => return i,
        }
        match b.get(i) {
            Some(',') => i += 1,
            _ => return i,
        }
        // `addr,+N` and `addr,~N`
        if matches!(b.get(i), Some('+' | '~')) {
            i += 1;
        }
    }
    i
}

fn skip_to_eol(b: &[char], mut i: usize) -> usize {
    while i < b.len() && b[i] != '\n' {
        i += 1;
    }
    i
}

fn skip_to_eol_or_semicolon(b: &[char], mut i: usize, to_eol: bool) -> usize {
    while i < b.len() && b[i] != '\n' && (to_eol || b[i] != ';') {
        i += 1;
    }
    i
}

fn read_filename(b: &[char], mut i: usize) -> (String, usize) {
    while i < b.len() && (b[i] == ' ' || b[i] == '\t') {
        i += 1;
    }
    let start = i;
    i = skip_to_eol(b, i);
    (b[start..i].iter().collect(), i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exec_and_writes() {
        assert!(scan("s/a/b/e").executes);
        assert!(scan("1e rm -rf /").executes);
        assert!(scan("/x/e id").executes);
        assert!(!scan("s/e/E/g").executes);
        assert!(!scan("/^#/d; s/foo/bar/g").executes);
        assert!(!scan("s|/usr/e|/opt|").executes);
        assert_eq!(scan("s/a/b/w /etc/x").writes, vec!["/etc/x".to_string()]);
        assert_eq!(scan("w out.txt").writes, vec!["out.txt".to_string()]);
        assert!(!scan("1i\\hello e").executes);
        assert!(!scan("$a end").executes);
    }
}
