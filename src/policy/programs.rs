//! Per-program argument rules: what a program runs and writes, read from its arguments.

use super::finding::Finding;
use super::opts::{OptSpec, scan};
use super::word::Word;
use super::{git, inline, sed};

const fn flags_then(short_arg: &'static str, long_arg: &'static [&'static str]) -> OptSpec {
    OptSpec {
        short_arg,
        short_attached: "",
        long_arg,
        stop_at_operand: false,
    }
}

/// Inspects a program that is not a wrapper. `args` excludes the program word.
pub(crate) fn inspect(name: &str, args: &[Word], out: &mut Vec<Finding>) {
    match name {
        "find" => find(args, out),
        "git" => git::inspect(args, out),
        n if inline::is_interpreter(n) => inline::inspect(n, args, out),
        "sed" => sed_cmd(args, out),
        "tar" => tar(args, out),
        "rg" => {
            let s = scan(
                args,
                &flags_then(
                    "efgmABCtTjM",
                    &["pre", "hostname-bin", "regexp", "file", "glob"],
                ),
            );
            for w in s.values(&["--pre", "--hostname-bin"]) {
                out.push(Finding::Run(vec![w.clone()]));
            }
        }
        "trap" => {
            // `trap ACTION SIGNAL...`; `trap -p`, `trap -l` and `trap - SIG` run nothing.
            if args.len() >= 2 && !args[0].literal().is_some_and(|t| t.starts_with('-')) {
                out.push(Finding::Script(args[0].clone()));
            }
        }
        "alias" => {
            for w in args {
                if let Some(value) = w
                    .literal_head()
                    .split_once('=')
                    .map(|(n, _)| format!("{n}="))
                    && let Some(v) = w.strip_literal_prefix(&value)
                {
                    out.push(Finding::Script(v));
                }
            }
        }
        "hash"
            if args.iter().any(|w| {
                let head = w.literal_head();
                head.starts_with('-') && head.contains('p')
            }) =>
        {
            out.push(Finding::refuse(
                "unsafe-builtin",
                "`hash -p` makes a command name run a different file",
                "call the program by its path",
                args[0].span,
            ))
        }
        "mapfile" | "readarray" => {
            let s = scan(args, &flags_then("dnOsuCc", &[]));
            if let Some(o) = s.opts.iter().find(|o| o.name == "-C") {
                out.push(Finding::refuse(
                    "unsafe-builtin",
                    "`mapfile -C` runs a callback the policy cannot see",
                    "read the lines first, then process them in a loop",
                    o.at,
                ));
            }
        }
        _ => writers(name, args, out),
    }
}

fn find(args: &[Word], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < args.len() {
        let t = args[i].literal().unwrap_or_default();
        match t.as_str() {
            "-exec" | "-execdir" | "-ok" | "-okdir" => {
                let start = i + 1;
                let mut end = start;
                while end < args.len() {
                    let e = args[end].literal();
                    let prev_braces =
                        end > start && args[end - 1].literal().as_deref() == Some("{}");
                    if e.as_deref() == Some(";") || (e.as_deref() == Some("+") && prev_braces) {
                        break;
                    }
                    end += 1;
                }
                if end > start {
                    out.push(Finding::Run(args[start..end].to_vec()));
                }
                i = end + 1;
            }
            "-fprint" | "-fprint0" | "-fls" | "-fprintf" => {
                if let Some(w) = args.get(i + 1) {
                    out.push(Finding::Write(w.clone()));
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
}

fn sed_cmd(args: &[Word], out: &mut Vec<Finding>) {
    let s = scan(
        args,
        &flags_then("efl", &["expression", "file", "line-length"]),
    );
    let in_place =
        s.has(&["-i", "--in-place"]) || s.opts.iter().any(|o| o.name.starts_with("--in-place"));
    let mut scripts: Vec<&Word> = s.values(&["-e", "--expression"]).collect();
    let mut files = s.operands.iter().map(|&i| &args[i]);
    let has_script_file = s.has(&["-f", "--file"]);
    if scripts.is_empty()
        && !has_script_file
        && let Some(first) = files.next()
    {
        scripts.push(first);
    }
    for script in scripts {
        let Some(text) = script.literal() else {
            out.push(Finding::refuse(
                "sed-exec",
                "the sed script is computed at run time, so what it runs or writes cannot be checked",
                "write the sed script literally",
                script.span,
            ));
            continue;
        };
        let fx = sed::scan(&text);
        if fx.executes {
            out.push(Finding::refuse(
                "sed-exec",
                "the sed script runs shell commands (the `e` command or `s///e`)",
                "run the command in the shell and let sed only edit text",
                script.span,
            ));
        }
        for file in fx.writes {
            out.push(Finding::Write(Word::literal_text(&file, script.span)));
        }
    }
    if in_place {
        out.extend(files.cloned().map(Finding::Write));
    }
}

fn tar(args: &[Word], out: &mut Vec<Finding>) {
    let s = scan(
        args,
        &flags_then(
            "fCIFbTXgKLNV",
            &[
                "file",
                "directory",
                "use-compress-program",
                "info-script",
                "new-volume-script",
                "to-command",
                "rsh-command",
                "checkpoint-action",
            ],
        ),
    );
    for opt in &s.opts {
        let Some(value) = opt.value.as_ref() else {
            continue;
        };
        match opt.name.as_str() {
            "-I"
            | "--use-compress-program"
            | "--to-command"
            | "-F"
            | "--info-script"
            | "--new-volume-script"
            | "--rsh-command" => out.push(Finding::Script(value.clone())),
            "--checkpoint-action" => {
                if let Some(cmd) = value.strip_literal_prefix("exec=") {
                    out.push(Finding::Script(cmd));
                }
            }
            _ => {}
        }
    }
}

/// Paths written by common file utilities, for the write rules.
fn writers(name: &str, args: &[Word], out: &mut Vec<Finding>) {
    let (spec, which) = match name {
        "tee" => (flags_then("", &["output-error"]), Which::All),
        "cp" | "mv" | "ln" | "install" | "rsync" => (
            flags_then(
                "tSmogeB",
                &[
                    "target-directory",
                    "suffix",
                    "mode",
                    "owner",
                    "group",
                    "rsh",
                    "exclude",
                    "include",
                    "filter",
                ],
            ),
            Which::Last,
        ),
        "touch" => (flags_then("dtr", &["date", "reference"]), Which::All),
        "truncate" => (flags_then("sr", &["size", "reference"]), Which::All),
        "mkdir" => (flags_then("m", &["mode"]), Which::All),
        "rm" | "rmdir" | "unlink" | "shred" => (flags_then("n", &["iterations"]), Which::All),
        "chmod" => (flags_then("", &["reference"]), Which::AllButFirst),
        "sort" => (
            flags_then(
                "otkSTt",
                &[
                    "output",
                    "key",
                    "field-separator",
                    "buffer-size",
                    "temporary-directory",
                ],
            ),
            Which::None,
        ),
        "uniq" => (
            flags_then("fsw", &["skip-fields", "skip-chars", "check-chars"]),
            Which::Second,
        ),
        "curl" => (
            flags_then(
                "oDcXHdFuAeEKrTwxyzbm",
                &[
                    "output",
                    "dump-header",
                    "cookie-jar",
                    "output-dir",
                    "trace",
                    "trace-ascii",
                    "stderr",
                ],
            ),
            Which::None,
        ),
        "wget" => (
            flags_then(
                "OPoa",
                &[
                    "output-document",
                    "directory-prefix",
                    "output-file",
                    "append-output",
                ],
            ),
            Which::None,
        ),
        "unzip" => (flags_then("d", &[]), Which::None),
        "patch" => (flags_then("oprdiBDFzV", &["output"]), Which::None),
        "dd" => {
            for w in args {
                if let Some(path) = w.strip_literal_prefix("of=") {
                    out.push(Finding::Write(path));
                }
            }
            return;
        }
        _ => return,
    };
    let s = scan(args, &spec);
    for opt in &s.opts {
        let writes = matches!(
            (name, opt.name.as_str()),
            ("cp" | "mv" | "ln" | "install", "-t" | "--target-directory")
                | ("sort", "-o" | "--output")
                | (
                    "curl",
                    "-o" | "--output"
                        | "-D"
                        | "--dump-header"
                        | "-c"
                        | "--cookie-jar"
                        | "--output-dir"
                        | "--trace"
                        | "--trace-ascii"
                        | "--stderr"
                )
                | (
                    "wget",
                    "-O" | "--output-document"
                        | "-P"
                        | "--directory-prefix"
                        | "-o"
                        | "--output-file"
                        | "-a"
                        | "--append-output"
                )
                | ("unzip", "-d")
                | ("patch", "-o" | "--output")
        );
        if writes && let Some(v) = &opt.value {
            out.push(Finding::Write(v.clone()));
        }
    }
    let ops: Vec<&Word> = s.operands.iter().map(|&i| &args[i]).collect();
    let picked: Vec<&Word> = match which {
        Which::All => ops,
        Which::AllButFirst => ops.into_iter().skip(1).collect(),
        Which::Last if ops.len() >= 2 => ops.last().copied().into_iter().collect(),
        Which::Second => ops.get(1).copied().into_iter().collect(),
        _ => Vec::new(),
    };
    out.extend(picked.into_iter().cloned().map(Finding::Write));
}

enum Which {
    All,
    AllButFirst,
    Last,
    Second,
    None,
}
