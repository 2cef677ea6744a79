//! Code given to an interpreter on its command line (`python -c`, `perl -e`, `ruby -e`,
//! `node -e`, `php -r`): the shell commands and recursive deletes it spells out with literal
//! strings, turned into findings the evaluator checks like any other command. Code that builds
//! the command at run time is left to the sandbox; only what is written out literally is read.

use std::sync::LazyLock;

use regex::Regex;

use super::finding::Finding;
use super::word::{Seg, Word};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Python,
    Perl,
    Ruby,
    Node,
    Php,
}

/// Nested `exec("...")` of Python code followed this deep.
const MAX_NESTED_CODE: usize = 3;
/// Call sites read per code string; past this the rest is the sandbox's.
const MAX_SITES: usize = 64;

fn lang_of(name: &str) -> Option<Lang> {
    let python = name == "python"
        || name.strip_prefix("python").is_some_and(|v| {
            v.starts_with(['2', '3']) && v.chars().all(|c| c.is_ascii_digit() || c == '.')
        });
    match name {
        _ if python => Some(Lang::Python),
        "perl" => Some(Lang::Perl),
        "ruby" => Some(Lang::Ruby),
        "node" | "nodejs" => Some(Lang::Node),
        "php" => Some(Lang::Php),
        _ => None,
    }
}

pub(crate) fn is_interpreter(name: &str) -> bool {
    lang_of(name).is_some()
}

/// Reads the inline code among an interpreter's arguments and pushes what it runs.
pub(crate) fn inspect(name: &str, args: &[Word], out: &mut Vec<Finding>) {
    let Some(lang) = lang_of(name) else {
        return;
    };
    let mut found = Vec::new();
    for code in code_words(lang, args) {
        if let Some(text) = code.literal() {
            scan(lang, &text, code.span, 0, &mut found);
        }
    }
    // A call inside a nested `exec("...")` is seen both in place and through the nesting.
    let mut seen = std::collections::HashSet::new();
    for f in found {
        let key = match &f {
            Finding::Script(w) => format!("s{}", w.canonical()),
            Finding::Run(ws) => {
                format!(
                    "r{}",
                    ws.iter().map(Word::canonical).collect::<Vec<_>>().join(" ")
                )
            }
            _ => String::new(),
        };
        if key.is_empty() || seen.insert(key) {
            out.push(f);
        }
    }
}

/// The words holding inline code: the value of `-c` (Python), each `-e`/`-E` (Perl), `-e`
/// (Ruby), `-e/-p/--eval/--print` (Node), `-r/-B/-R/-E` (PHP). Option parsing stops at the
/// script file or module, as the interpreter's does.
fn code_words(lang: Lang, args: &[Word]) -> Vec<Word> {
    // (flags whose value is code, flags whose value is the rest of the cluster or the next word)
    let (code_flags, arg_flags): (&str, &str) = match lang {
        Lang::Python => ("c", "WXQ"),
        Lang::Perl => ("eE", "iIMmFxdDC0l"),
        Lang::Ruby => ("e", "rICEFKTWx0il"),
        Lang::Node => ("ep", "r"),
        Lang::Php => ("rBRE", "dczf"),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let Some(t) = args[i].literal() else {
            break;
        };
        if t == "--" || t == "-" || !t.starts_with('-') {
            break;
        }
        if let Some(long) = t.strip_prefix("--") {
            let code_long = lang == Lang::Node && matches!(long, "eval" | "print");
            if let Some((n, _)) = long.split_once('=') {
                if lang == Lang::Node && matches!(n, "eval" | "print") {
                    out.extend(args[i].strip_literal_prefix(&format!("--{n}=")));
                }
            } else if code_long {
                out.extend(args.get(i + 1).cloned());
                i += 1;
            } else if lang == Lang::Node && matches!(long, "require" | "import" | "loader") {
                i += 1;
            }
            i += 1;
            continue;
        }
        if lang == Lang::Python && t == "-m" || lang == Lang::Php && t == "-f" {
            break;
        }
        let mut cluster = t.char_indices().skip(1).peekable();
        while let Some((pos, c)) = cluster.next() {
            let rest_at = pos + c.len_utf8();
            if code_flags.contains(c) {
                if rest_at < t.len() {
                    out.extend(args[i].strip_literal_prefix(&t[..rest_at]));
                } else {
                    i += 1;
                    out.extend(args.get(i).cloned());
                }
                break;
            }
            if lang == Lang::Python && c == 'm' {
                return out;
            }
            // Perl's and Ruby's `-l` and `-0` take optional attached digits, then the cluster
            // goes on (`-lne`).
            if matches!(lang, Lang::Perl | Lang::Ruby) && matches!(c, 'l' | '0') {
                while cluster
                    .next_if(|(_, d)| d.is_ascii_hexdigit() || *d == 'x')
                    .is_some()
                {}
                continue;
            }
            if arg_flags.contains(c) {
                // Perl's and Ruby's cluster flags mostly take attached values only.
                let separate = matches!(
                    (lang, c),
                    (Lang::Python, _)
                        | (Lang::Node, 'r')
                        | (Lang::Php, _)
                        | (Lang::Ruby, 'r' | 'I' | 'C' | 'E')
                );
                if rest_at == t.len() && separate {
                    i += 1;
                }
                break;
            }
        }
        i += 1;
    }
    out
}

#[derive(Clone, Copy)]
enum Site {
    /// Runs its argument through a shell (a string), or as an argv (a list, or several strings).
    Shell,
    /// `spawn`/`execFile`: a program then an optional argv list.
    Program,
    /// A recursive delete of its first argument.
    Delete,
    /// Code in the same language (`exec("...")` in Python).
    Code,
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap_or_else(|e| unreachable!("inline-code pattern must compile: {e}"))
}

static PYTHON: LazyLock<Vec<(Regex, Site)>> = LazyLock::new(|| {
    vec![
        (
            re(
                r"\b(?:os\.(?:system|popen)|subprocess\.(?:run|call|check_call|check_output|Popen|getoutput|getstatusoutput)|commands\.getoutput)\s*\(",
            ),
            Site::Shell,
        ),
        (re(r"\b(?:shutil\.)?rmtree\s*\("), Site::Delete),
        (re(r"(?:^|[^.\w])exec\s*\("), Site::Code),
    ]
});
/// `from os import system` / `from subprocess import run` make the bare names callable.
static PYTHON_BARE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:^|[^.\w])(?:system|popen|run|call|check_call|check_output|Popen|getoutput|getstatusoutput)\s*\(",
    )
});
static PERL: LazyLock<Vec<(Regex, Site)>> = LazyLock::new(|| {
    vec![
        (re(r"(?:^|[^\w$@%&>:])(?:system|exec)\b\s*\(?"), Site::Shell),
        (
            re(r"\b(?:File::Path::)?(?:rmtree|remove_tree)\b\s*\(?"),
            Site::Delete,
        ),
    ]
});
static RUBY: LazyLock<Vec<(Regex, Site)>> = LazyLock::new(|| {
    vec![
        (
            re(
                r"(?:^|[^\w.])(?:Kernel\.)?(?:system|exec|spawn)\b\s*\(?|\b(?:IO\.popen|Open3\.(?:capture2e?|capture3|popen2e?|popen3|pipeline))\b\s*\(?",
            ),
            Site::Shell,
        ),
        (
            re(
                r"\bFileUtils\.(?:rm_rf|rm_r|remove_dir|remove_entry|remove_entry_secure|rmtree)\b\s*\(?",
            ),
            Site::Delete,
        ),
    ]
});
static NODE: LazyLock<Vec<(Regex, Site)>> = LazyLock::new(|| {
    vec![
        (re(r"\b(?:execSync|exec)\s*\("), Site::Shell),
        (
            re(r"\b(?:execFileSync|execFile|spawnSync|spawn)\s*\("),
            Site::Program,
        ),
        (re(r"\b(?:rmSync|rmdirSync|rm|rmdir)\s*\("), Site::Delete),
    ]
});
static PHP: LazyLock<Vec<(Regex, Site)>> = LazyLock::new(|| {
    vec![(
        re(r"(?:^|[^\w>:$])(?:system|exec|shell_exec|passthru|popen|proc_open)\s*\("),
        Site::Shell,
    )]
});

fn scan(lang: Lang, code: &str, at: (usize, usize), depth: usize, out: &mut Vec<Finding>) {
    let mut sites: Vec<(usize, Site)> = Vec::new();
    let table: &[(Regex, Site)] = match lang {
        Lang::Python => &PYTHON,
        Lang::Perl => &PERL,
        Lang::Ruby => &RUBY,
        // Without child_process, `exec(` is RegExp.prototype.exec.
        Lang::Node if !code.contains("child_process") => &NODE[2..],
        Lang::Node => &NODE,
        Lang::Php => &PHP,
    };
    for (r, site) in table {
        sites.extend(r.find_iter(code).map(|m| (m.end(), *site)));
    }
    if lang == Lang::Python
        && (code.contains("from os import") || code.contains("from subprocess import"))
    {
        sites.extend(PYTHON_BARE.find_iter(code).map(|m| (m.end(), Site::Shell)));
    }
    sites.sort_by_key(|s| s.0);
    sites.dedup_by_key(|s| s.0);
    for &(end, site) in sites.iter().take(MAX_SITES) {
        let rest = &code[end..];
        match site {
            Site::Shell => match args(lang, rest) {
                Some(Args::One(cmd)) => out.push(Finding::Script(Word::literal_text(&cmd, at))),
                Some(Args::Argv(v)) if !v.is_empty() => out.push(Finding::Run(
                    v.iter().map(|a| Word::literal_text(a, at)).collect(),
                )),
                _ => {}
            },
            Site::Program => match args(lang, rest) {
                Some(Args::One(cmd)) if shell_option(rest) => {
                    out.push(Finding::Script(Word::literal_text(&cmd, at)))
                }
                Some(Args::One(prog)) => {
                    out.push(Finding::Run(vec![Word::literal_text(&prog, at)]))
                }
                Some(Args::Argv(v)) if !v.is_empty() => out.push(Finding::Run(
                    v.iter().map(|a| Word::literal_text(a, at)).collect(),
                )),
                _ => {}
            },
            Site::Delete => {
                let recursive = match lang {
                    Lang::Node => node_recursive(rest),
                    _ => true,
                };
                if recursive && let Some(path) = path_expr(lang, rest, at) {
                    out.push(Finding::Run(vec![
                        Word::literal_text("rm", at),
                        Word::literal_text("-rf", at),
                        path,
                    ]));
                }
            }
            Site::Code if depth < MAX_NESTED_CODE => {
                if let Some((inner, tail)) = string_lit(lang, rest)
                    && ends_arg(tail)
                {
                    scan(lang, &inner, at, depth + 1, out);
                }
            }
            Site::Code => {}
        }
    }
    if matches!(lang, Lang::Perl | Lang::Ruby | Lang::Php) {
        for cmd in backquoted(lang, code).into_iter().take(MAX_SITES) {
            out.push(Finding::Script(Word::literal_text(&cmd, at)));
        }
    }
}

enum Args {
    /// One string: shell text.
    One(String),
    /// A list literal, or several strings: an argv.
    Argv(Vec<String>),
}

/// The literal arguments at the start of `s` (just after the call's `(` or name). `None` when
/// any of them is not a literal: then what runs is decided at run time.
fn args(lang: Lang, s: &str) -> Option<Args> {
    let t = s.trim_start();
    if let Some(list) = t.strip_prefix('[') {
        let (items, tail) = list_lit(lang, list)?;
        return ends_arg(tail).then_some(Args::Argv(items));
    }
    let (first, mut tail) = string_lit(lang, t)?;
    // Perl's, Ruby's and Node's list forms: `system("rm", "-rf", $x)`, `spawn("rm", [...])`.
    let mut items = vec![first];
    loop {
        let after = tail.trim_start();
        let Some(next) = after.strip_prefix(',') else {
            break;
        };
        let next = next.trim_start();
        if lang == Lang::Node || lang == Lang::Python {
            if let Some(list) = next.strip_prefix('[') {
                let (more, t2) = list_lit(lang, list)?;
                items.extend(more);
                tail = t2;
                continue;
            }
            // Keyword arguments and option objects follow.
            break;
        }
        if matches!(lang, Lang::Ruby) && !next.starts_with(['\'', '"']) {
            break;
        }
        let Some((v, t2)) = string_lit(lang, next) else {
            // `system("rm", "-rf", $dir)`: the literal head is still the program and its
            // first arguments; a lone literal with run-time arguments is an argv, not shell.
            if items.len() == 1 {
                return None;
            }
            return Some(Args::Argv(items));
        };
        items.push(v);
        tail = t2;
    }
    if !ends_arg(tail) {
        return None;
    }
    Some(if items.len() == 1 {
        Args::One(items.remove(0))
    } else {
        Args::Argv(items)
    })
}

fn ends_arg(tail: &str) -> bool {
    let t = tail.trim_start();
    t.is_empty() || t.starts_with([')', ',', ';', '}', ']']) || t.starts_with("or ")
}

/// `[ "a", 'b' ]` after the `[`: the items and what follows the `]`.
fn list_lit(lang: Lang, s: &str) -> Option<(Vec<String>, &str)> {
    let mut items = Vec::new();
    let mut t = s.trim_start();
    loop {
        if let Some(rest) = t.strip_prefix(']') {
            return Some((items, rest));
        }
        let (v, rest) = string_lit(lang, t)?;
        items.push(v);
        t = rest.trim_start();
        if let Some(rest) = t.strip_prefix(',') {
            t = rest.trim_start();
        } else if !t.starts_with(']') {
            return None;
        }
    }
}

/// `shell: true` / `shell=True` among the call's options.
fn shell_option(rest: &str) -> bool {
    static SHELL: LazyLock<Regex> = LazyLock::new(|| re(r"^[^)]*\bshell\s*[:=]\s*(?:true|True)"));
    SHELL.is_match(rest)
}

fn node_recursive(rest: &str) -> bool {
    static REC: LazyLock<Regex> = LazyLock::new(|| re(r"^[^;]*\brecursive\s*:\s*true"));
    REC.is_match(rest)
}

/// The path a delete acts on: a string literal, or the home directory spelled the language's
/// way. A literal `~` is a directory named `~` (no interpreter expands it), so only the
/// expanding forms become the shell's `~`.
fn path_expr(lang: Lang, rest: &str, at: (usize, usize)) -> Option<Word> {
    static HOME: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r#"^\s*(?:os\.path\.expanduser\(\s*['"]~['"]\s*\)|(?:pathlib\.)?Path\.home\(\)|os\.environ\[\s*['"]HOME['"]\s*\]|os\.environ\.get\(\s*['"]HOME['"]\s*\)|os\.getenv\(\s*['"]HOME['"]\s*\)|\$ENV\{\s*['"]?HOME['"]?\s*\}|Dir\.home|ENV\[\s*['"]HOME['"]\s*\]|File\.expand_path\(\s*['"]~['"]\s*\)|(?:require\(\s*['"](?:node:)?os['"]\s*\)|os)\.homedir\(\)|process\.env\.HOME|process\.env\[\s*['"]HOME['"]\s*\])"#,
        )
    });
    static EXPAND: LazyLock<Regex> = LazyLock::new(|| {
        re(r#"^\s*(?:os\.path\.expanduser|File\.expand_path|(?:pathlib\.)?Path)\(\s*"#)
    });
    let bare = |s: &str| Word {
        segs: vec![Seg::Bare(s.to_string())],
        span: at,
    };
    if let Some(m) = HOME.find(rest) {
        return ends_arg(&rest[m.end()..]).then(|| bare("~"));
    }
    if let Some(m) = EXPAND.find(rest) {
        let (p, tail) = string_lit(lang, &rest[m.end()..])?;
        let tail = tail.trim_start().strip_prefix(')')?;
        let tail = tail.strip_prefix(".expanduser()").unwrap_or(tail);
        return ends_arg(tail).then(|| bare(&p));
    }
    let (p, tail) = string_lit(lang, rest.trim_start())?;
    ends_arg(tail).then(|| Word::literal_text(&p, at))
}

/// A string literal at the start of `s`: its value and the text after it. `None` for anything
/// else, including strings that interpolate (f-strings, `"$x"`, `"#{x}"`, `` `${x}` ``).
fn string_lit(lang: Lang, s: &str) -> Option<(String, &str)> {
    let mut s = s.trim_start();
    let mut raw = false;
    if lang == Lang::Python {
        let prefix: String = s.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        if prefix.len() > 2 || !prefix.chars().all(|c| "rRbBuUfF".contains(c)) {
            return None;
        }
        if prefix.contains(['f', 'F']) && s.contains('{') {
            return None;
        }
        raw = prefix.contains(['r', 'R']);
        s = &s[prefix.len()..];
    }
    let q = s.chars().next()?;
    let quotes: &[char] = match lang {
        Lang::Node => &['\'', '"', '`'],
        _ => &['\'', '"'],
    };
    if !quotes.contains(&q) {
        return None;
    }
    let triple: String = std::iter::repeat_n(q, 3).collect();
    let (delim, body) = if lang == Lang::Python && s.starts_with(&triple) {
        (triple.as_str(), &s[3..])
    } else {
        (&s[..1], &s[1..])
    };
    // Single quotes in Perl, Ruby and PHP take only `\\` and `\'` as escapes.
    let single_only = q == '\'' && matches!(lang, Lang::Perl | Lang::Ruby | Lang::Php);
    let interpolates = match (lang, q) {
        (Lang::Perl, '"') => &["$", "@"][..],
        (Lang::Php, '"') => &["$"][..],
        (Lang::Ruby, '"') => &["#{", "#$", "#@"][..],
        (Lang::Node, '`') => &["${"][..],
        _ => &[][..],
    };
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if body[i..].starts_with(delim) {
            let after = &body[i + delim.len()..];
            return Some((out, after));
        }
        if interpolates.iter().any(|p| body[i..].starts_with(p)) {
            return None;
        }
        if c == '\\' && !raw {
            let (_, n) = chars.next()?;
            match n {
                '\\' => out.push('\\'),
                '\n' if !single_only => {}
                _ if n == q => out.push(q),
                'n' if !single_only => out.push('\n'),
                't' if !single_only => out.push('\t'),
                '$' | '@' if !single_only => out.push(n),
                _ => {
                    out.push('\\');
                    out.push(n);
                }
            }
            continue;
        }
        out.push(c);
    }
    None
}

/// Backquoted commands and `qx{...}` / `%x{...}` in Perl, Ruby and PHP, when they do not
/// interpolate.
fn backquoted(lang: Lang, code: &str) -> Vec<String> {
    static QX: LazyLock<Regex> = LazyLock::new(|| re(r"(?:^|[^\w$@%&])(?:qx|%x)\s*([{(\[</|!'])"));
    let mut out = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'`' {
            let Some(len) = code[i + 1..].find('`') else {
                break;
            };
            let inner = &code[i + 1..i + 1 + len];
            if !interpolates(lang, inner) {
                out.push(inner.replace("\\`", "`"));
            }
            i += len + 2;
            continue;
        }
        i += 1;
    }
    if lang != Lang::Php {
        for c in QX.captures_iter(code) {
            let Some(open) = c.get(1) else { continue };
            let close = match open.as_str() {
                "{" => '}',
                "(" => ')',
                "[" => ']',
                "<" => '>',
                o => o.chars().next().unwrap_or('/'),
            };
            let body = &code[open.end()..];
            if let Some(len) = body.find(close) {
                let inner = &body[..len];
                if open.as_str() == "'" || !interpolates(lang, inner) {
                    out.push(inner.to_string());
                }
            }
        }
    }
    out
}

fn interpolates(lang: Lang, s: &str) -> bool {
    match lang {
        Lang::Ruby => s.contains("#{") || s.contains('\\'),
        _ => s.contains(['$', '@', '\\']),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, args: &[&str]) -> Vec<String> {
        let words: Vec<Word> = args.iter().map(|a| Word::literal_text(a, (0, 0))).collect();
        let mut out = Vec::new();
        inspect(name, &words, &mut out);
        out.iter()
            .map(|f| match f {
                Finding::Script(w) => format!("sh:{}", w.literal().unwrap_or_default()),
                Finding::Run(ws) => format!(
                    "run:{}",
                    ws.iter().map(Word::canonical).collect::<Vec<_>>().join(" ")
                ),
                _ => "other".to_string(),
            })
            .collect()
    }

    #[test]
    fn python_shell_calls() {
        assert_eq!(
            found("python3", &["-c", r#"import os; os.system("rm -rf /")"#]),
            ["sh:rm -rf /"]
        );
        assert_eq!(
            found(
                "python",
                &[
                    "-c",
                    "import subprocess; subprocess.run('ls -l', shell=True)"
                ]
            ),
            ["sh:ls -l"]
        );
        assert_eq!(
            found(
                "python3.12",
                &[
                    "-c",
                    "import subprocess as s; subprocess.call(['rm', '-rf', '/'])"
                ]
            ),
            ["run:rm -rf /"]
        );
        assert_eq!(
            found("python3", &["-uc", "from os import system\nsystem('id')"]),
            ["sh:id"]
        );
        assert_eq!(
            found("python3", &["-c", "exec(\"import os; os.system('id')\")"]),
            ["sh:id"]
        );
    }

    #[test]
    fn python_not_literal_or_not_a_call() {
        assert!(found("python3", &["-c", "import os; os.system('rm -rf ' + d)"]).is_empty());
        assert!(found("python3", &["-c", "import os; os.system(f'rm {d}')"]).is_empty());
        // A call spelled inside a string literal is read too: the price of not parsing Python.
        assert_eq!(
            found("python3", &["-c", "print('os.system(\"x\")')"]),
            ["sh:x"]
        );
        assert!(
            found(
                "python3",
                &["-c", "import json,sys; print(json.load(sys.stdin)['a'])"]
            )
            .is_empty()
        );
        assert!(found("python3", &["-m", "json.tool"]).is_empty());
        assert!(found("python3", &["script.py", "-c", "os.system('x')"]).is_empty());
    }

    #[test]
    fn recursive_deletes() {
        assert_eq!(
            found("python3", &["-c", "import shutil; shutil.rmtree('/')"]),
            ["run:rm -rf /"]
        );
        assert_eq!(
            found(
                "python3",
                &[
                    "-c",
                    "import shutil,os; shutil.rmtree(os.path.expanduser('~'))"
                ]
            ),
            ["run:rm -rf ~"]
        );
        // Python does not expand a literal `~`: that is a directory named `~`.
        assert_eq!(
            found("python3", &["-c", "import shutil; shutil.rmtree('~')"]),
            ["run:rm -rf '~'"]
        );
        assert_eq!(
            found(
                "perl",
                &["-MFile::Path=remove_tree", "-e", "remove_tree($ENV{HOME})"]
            ),
            ["run:rm -rf ~"]
        );
        assert_eq!(
            found("ruby", &["-rfileutils", "-e", "FileUtils.rm_rf('/')"]),
            ["run:rm -rf /"]
        );
        assert_eq!(
            found(
                "node",
                &[
                    "-e",
                    "require('fs').rmSync('/', {recursive: true, force: true})"
                ]
            ),
            ["run:rm -rf /"]
        );
        assert_eq!(
            found(
                "node",
                &[
                    "-e",
                    "fs.rmSync(require('os').homedir(), { recursive: true })"
                ]
            ),
            ["run:rm -rf ~"]
        );
        assert!(found("node", &["-e", "fs.rmSync('dist/x.js')"]).is_empty());
    }

    #[test]
    fn perl_ruby_node_php() {
        assert_eq!(
            found("perl", &["-e", "system('rm -rf /')"]),
            ["sh:rm -rf /"]
        );
        assert_eq!(
            found("perl", &["-e", "system 'rm', '-rf', '/'"]),
            ["run:rm -rf /"]
        );
        assert_eq!(found("perl", &["-E", "say `id`"]), ["sh:id"]);
        assert_eq!(found("perl", &["-e", "print qx{whoami}"]), ["sh:whoami"]);
        assert!(found("perl", &["-e", "system(\"rm -rf $d\")"]).is_empty());
        assert!(found("perl", &["-pi", "-e", "s/foo/bar/g", "f.txt"]).is_empty());
        assert_eq!(found("perl", &["-ne", "system('ls')"]), ["sh:ls"]);
        assert_eq!(
            found("ruby", &["-e", "system('rm -rf ~')"]),
            ["sh:rm -rf ~"]
        );
        assert_eq!(found("ruby", &["-e", "puts %x(ls)"]), ["sh:ls"]);
        assert_eq!(
            found(
                "node",
                &["-e", "require('child_process').execSync('rm -rf /')"]
            ),
            ["sh:rm -rf /"]
        );
        assert_eq!(
            found(
                "node",
                &[
                    "-e",
                    "const {spawnSync}=require('child_process'); spawnSync('rm', ['-rf', '/'])"
                ]
            ),
            ["run:rm -rf /"]
        );
        assert!(found("node", &["-e", "console.log(/a/.exec('rm -rf /'))"]).is_empty());
        assert_eq!(found("php", &["-r", "system('id');"]), ["sh:id"]);
        assert_eq!(found("php", &["-r", "echo `ls`;"]), ["sh:ls"]);
        assert!(found("php", &["-r", "echo json_encode([1]);"]).is_empty());
    }
}
