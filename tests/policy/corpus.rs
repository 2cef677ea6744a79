//! Reader for the corpus files beside this one, shared by tests/policy_corpus.rs and
//! benches/policy.rs.

use std::path::{Path, PathBuf};

pub struct Case {
    /// 1-based line of the entry in its file.
    pub line: usize,
    /// The rule a refused case must name; `None` for allowed cases.
    pub expect: Option<String>,
    pub command: String,
}

pub fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/policy")
        .join(name)
}

/// `#` comments, one command per line, or a `<<<` ... `>>>` block for a multi-line command.
/// With `tagged`, each entry starts `RULE<TAB>`.
pub fn read(path: &Path, tagged: bool) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cases = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (expect, rest) = if tagged {
            let (rule, rest) = line
                .split_once('\t')
                .ok_or_else(|| format!("{}:{}: missing RULE<TAB>", path.display(), i + 1))?;
            (Some(rule.to_string()), rest)
        } else {
            (None, line)
        };
        let command = if rest == "<<<" {
            let mut block = Vec::new();
            for (_, l) in lines.by_ref() {
                if l == ">>>" {
                    break;
                }
                block.push(l);
            }
            block.join("\n")
        } else {
            rest.to_string()
        };
        cases.push(Case {
            line: i + 1,
            expect,
            command,
        });
    }
    Ok(cases)
}

/// Both files: (allowed, refused).
pub fn load() -> Result<(Vec<Case>, Vec<Case>), String> {
    Ok((
        read(&path("allowed.txt"), false)?,
        read(&path("refused.txt"), true)?,
    ))
}
