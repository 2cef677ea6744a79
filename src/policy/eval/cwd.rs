//! Where a command acts and what it reads: the working directory a `cd`/`pushd` earlier in the
//! same command line moved to (so `cd / && rm -rf *` is judged as `rm -rf /*`), and the output of
//! a pipeline stage that prints only literals (so `echo / | xargs rm -rf` is `rm -rf /`).

use super::*;
use crate::policy::word::Seg;

/// Joins `rel` onto `base` and folds `.` and `..`. `base` is `.`-relative, absolute or
/// `~`-based; the result keeps that form.
pub(crate) fn join(base: &str, rel: &str) -> String {
    let whole = if rel.starts_with('/') || rel == "~" || rel.starts_with("~/") {
        rel.to_string()
    } else {
        format!("{base}/{rel}")
    };
    let (root, rest) = if let Some(r) = whole.strip_prefix('/') {
        ("/", r)
    } else if let Some(r) = whole.strip_prefix('~') {
        ("~", r)
    } else {
        ("", whole.as_str())
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in rest.split('/') {
        match c {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&p) if p != ".." => {
                    parts.pop();
                }
                // Above `/` is `/`; above `~` or the start directory stays spelled out.
                _ if root == "/" => {}
                _ => parts.push(".."),
            },
            c => parts.push(c),
        }
    }
    match (root, parts.is_empty()) {
        ("/", _) => format!("/{}", parts.join("/")),
        ("~", true) => "~".to_string(),
        ("~", false) => format!("~/{}", parts.join("/")),
        (_, true) => ".".to_string(),
        _ => parts.join("/"),
    }
}

/// A word that names a path relative to the working directory, spelled plainly: its text.
fn relative_path(w: &Word) -> Option<String> {
    let [Seg::Bare(t) | Seg::Lit(t)] = w.segs.as_slice() else {
        return None;
    };
    let plain = t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.+@%,:=/*?".contains(c));
    (plain && !t.starts_with(['-', '/', '~'])).then(|| t.clone())
}

impl Eval<'_> {
    /// Runs `body` as a subshell would: a `cd` inside does not move the caller.
    pub(super) fn in_subshell(&mut self, body: impl FnOnce(&mut Self) -> Check) -> Check {
        let cwd = self.cwd.clone();
        let r = body(self);
        self.cwd = cwd;
        r
    }

    /// Where the shell is, when that is somewhere other than where the job started.
    fn moved(&self) -> Option<&str> {
        self.cwd.as_deref().filter(|c| *c != ".")
    }

    /// `cd`/`pushd`/`popd`: where the rest of this shell's commands act.
    pub(super) fn change_dir(&mut self, name: &str, args: &[Word]) {
        let target = args.iter().find(|w| {
            !w.literal()
                .is_some_and(|t| t.len() > 1 && t.starts_with('-') && t != "--")
                && w.literal().as_deref() != Some("--")
        });
        self.cwd = match (name, target) {
            ("popd", _) => None,
            (_, None) if name == "cd" => Some("~".to_string()),
            (_, None) => None,
            (_, Some(w)) => match w.literal() {
                Some(t) if t == "-" => None,
                Some(t) => self.cwd.as_deref().map(|base| join(base, &t)),
                None => {
                    let c = w.canonical();
                    let home = ["$HOME", "${HOME}", "~"]
                        .iter()
                        .find_map(|h| c.strip_prefix(h))
                        .filter(|rest| rest.is_empty() || rest.starts_with('/'));
                    home.map(|rest| join("~", &format!("~{rest}")))
                }
            },
        };
    }

    /// Path rules over a path as written and, when the working directory moved, as joined onto
    /// it (`cd /etc && echo x > hosts` writes `/etc/hosts`).
    pub(super) fn path_rules(
        &self,
        f: &Frame,
        on: RuleTarget,
        w: &Word,
        at: (usize, usize),
        program: &str,
    ) -> Check {
        self.rules(f, on, &w.canonical(), at, program)?;
        if let (Some(base), Some(rel)) = (self.moved(), relative_path(w)) {
            self.rules(f, on, &join(base, &rel), at, program)?;
        }
        Ok(())
    }

    /// The arguments with relative paths joined onto the working directory, when it moved and
    /// that changes any of them.
    pub(super) fn resolved_args(&self, args: &[Word]) -> Option<Vec<Word>> {
        let base = self.moved()?;
        let mut changed = false;
        let out = args
            .iter()
            .map(|w| match relative_path(w) {
                Some(rel) => {
                    changed = true;
                    Word {
                        segs: vec![Seg::Bare(join(base, &rel))],
                        span: w.span,
                    }
                }
                None => w.clone(),
            })
            .collect();
        changed.then_some(out)
    }

    /// What a pipeline stage writes to the next, when it is known before running: `echo` or
    /// `printf` of literal words.
    pub(super) fn output_of(&self, f: &Frame, stage: Node) -> Option<String> {
        if stage.kind() != "command" {
            return None;
        }
        let (argv, _) = self.argv(f, stage).ok()?;
        let words: Vec<String> = argv
            .iter()
            .map(|w| {
                let t = w.literal()?;
                // An unquoted leading `~` prints the home directory.
                Some(match (w.segs.first(), t.strip_prefix('~')) {
                    (Some(Seg::Bare(b)), Some(rest)) if b.starts_with('~') => {
                        format!("{}{rest}", wrappers::HOME_MARK)
                    }
                    _ => t,
                })
            })
            .collect::<Option<_>>()?;
        let (prog, args) = words.split_first()?;
        match basename(prog) {
            "echo" => echo_output(args),
            "printf" => printf_output(args),
            _ => None,
        }
    }
}

/// What `echo` prints, when no shell's echo could read it differently (no backslash, no
/// `-e`/`-E`, which dash prints).
fn echo_output(args: &[String]) -> Option<String> {
    let (newline, args) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    if args.iter().any(|a| a.contains('\\')) || args.first().is_some_and(|a| a == "-e" || a == "-E")
    {
        return None;
    }
    let mut out = args.join(" ");
    if newline {
        out.push('\n');
    }
    Some(out)
}

/// What `printf FORMAT ARGS...` prints, for formats made of text, `%s`, `%%` and the escapes
/// `\n \t \0 \\`; the format is reused while arguments remain, as printf does.
fn printf_output(args: &[String]) -> Option<String> {
    let (format, mut rest) = args.split_first()?;
    let mut out = String::new();
    loop {
        let mut used = 0;
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => match chars.next()? {
                    's' => {
                        out.push_str(rest.get(used).map_or("", String::as_str));
                        used += 1;
                    }
                    '%' => out.push('%'),
                    _ => return None,
                },
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    '0' => out.push('\0'),
                    '\\' => out.push('\\'),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        if used == 0 || used >= rest.len() {
            return Some(out);
        }
        rest = &rest[used..];
        if out.len() > 64 * 1024 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_folds() {
        assert_eq!(join(".", "/"), "/");
        assert_eq!(join("/", "*"), "/*");
        assert_eq!(join("/usr", "../etc"), "/etc");
        assert_eq!(join("/", "../.."), "/");
        assert_eq!(join(".", "build"), "build");
        assert_eq!(join("build", ".."), ".");
        assert_eq!(join(".", "../.."), "../..");
        assert_eq!(join("..", "*"), "../*");
        assert_eq!(join("/tmp", "~"), "~");
        assert_eq!(join("~", "*"), "~/*");
        assert_eq!(join("~", "src/./x"), "~/src/x");
    }

    #[test]
    fn printf_and_echo() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            printf_output(&s(&["%s\\n", "a", "b"])).as_deref(),
            Some("a\nb\n")
        );
        assert_eq!(printf_output(&s(&["/\\0"])).as_deref(), Some("/\0"));
        assert_eq!(printf_output(&s(&["%d", "1"])), None);
        assert_eq!(echo_output(&s(&["-n", "/"])).as_deref(), Some("/"));
        assert_eq!(echo_output(&s(&["-e", "/"])), None);
        assert_eq!(echo_output(&s(&["a\\nb"])), None);
    }
}
