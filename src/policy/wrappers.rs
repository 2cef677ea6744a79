//! Programs that run another command: where in their arguments that command is, how it is
//! spelled (an argv, or shell text), and what it gets from their input. One table describes them
//! all (`env`, `nice`, `timeout`, `xargs`, `parallel`, `watch`, `flock`, `uv run`, ...); the
//! evaluator checks the command found with every rule, as if it were written on its own.

use super::finding::Finding;
use super::opts::{OptSpec, Scan, scan};
use super::word::{DynKind, Seg, Word};

const fn spec(short_arg: &'static str, long_arg: &'static [&'static str]) -> OptSpec {
    OptSpec {
        short_arg,
        short_attached: "",
        long_arg,
        stop_at_operand: true,
    }
}

/// How the command a runner runs is spelled in its arguments.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The remaining words are an argv (`nice rm -rf x`).
    Argv,
    /// The remaining words, joined by spaces, are shell text (`watch 'ls | wc -l'`,
    /// `parallel 'gzip {}' ::: a b`).
    Joined,
}

/// Where its input goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Not into the command line.
    None,
    /// Items read from input become arguments: appended, or substituted for a replace string.
    Items,
}

/// A program that runs a command given in its arguments.
struct Runner {
    /// The program, and for tools that run commands through a subcommand (`uv run`), that
    /// subcommand.
    name: &'static str,
    sub: Option<&'static str>,
    opts: OptSpec,
    /// Operands before the command (`timeout DURATION`, `flock FILE`, `taskset MASK`).
    skip: usize,
    form: Form,
    input: Input,
    /// Options after which it runs nothing (`command -v`, `taskset -p`).
    inert: &'static [&'static str],
    /// Options whose value is shell text it runs (`flock -c`, `npx -c`).
    script: &'static [&'static str],
    /// Options that make it run a shell or a string the policy cannot check.
    opaque: &'static [&'static str],
    /// Options whose value is a file it writes (`time -o`).
    writes: &'static [&'static str],
    /// `NAME=VALUE` words before the command set its environment (`env`, `sudo`).
    assignments: bool,
    /// The command is a project tool (`uv run pytest`, `npm exec tsc`): it may be a program
    /// installed with the project, which no allowlist can name. It is still checked against
    /// every deny rule, and followed if it is a shell or another runner.
    tool: bool,
}

const fn runner(name: &'static str, opts: OptSpec) -> Runner {
    Runner {
        name,
        sub: None,
        opts,
        skip: 0,
        form: Form::Argv,
        input: Input::None,
        inert: &[],
        script: &[],
        opaque: &[],
        writes: &[],
        assignments: false,
        tool: false,
    }
}

const fn tool(name: &'static str, sub: Option<&'static str>, opts: OptSpec) -> Runner {
    Runner {
        sub,
        tool: true,
        ..runner(name, opts)
    }
}

const NONE: OptSpec = spec("", &[]);

const RUNNERS: &[Runner] = &[
    Runner {
        opaque: &["-S", "--split-string"],
        assignments: true,
        ..runner("env", spec("uCS", &["unset", "chdir", "split-string"]))
    },
    runner("nice", spec("n", &["adjustment"])),
    runner("nohup", NONE),
    Runner {
        skip: 1,
        ..runner("timeout", spec("sk", &["signal", "kill-after"]))
    },
    Runner {
        writes: &["-o", "--output"],
        ..runner("time", spec("fo", &["format", "output"]))
    },
    runner("stdbuf", spec("ioe", &["input", "output", "error"])),
    Runner {
        inert: &["-p", "-P", "-u", "--pid", "--pgid", "--uid"],
        ..runner(
            "ionice",
            spec("cnpPu", &["class", "classdata", "pid", "pgid", "uid"]),
        )
    },
    runner("setsid", NONE),
    Runner {
        skip: 1,
        inert: &["-p", "--pid"],
        ..runner("taskset", NONE)
    },
    Runner {
        inert: &["-v", "-V"],
        ..runner("command", NONE)
    },
    runner("builtin", NONE),
    runner("exec", spec("a", &[])),
    Runner {
        opaque: &["-s", "-i", "--shell", "--login"],
        assignments: true,
        ..runner(
            "sudo",
            spec(
                "ugCDhprtTU",
                &[
                    "user",
                    "group",
                    "close-from",
                    "chdir",
                    "host",
                    "prompt",
                    "role",
                    "type",
                    "command-timeout",
                    "other-user",
                ],
            ),
        )
    },
    Runner {
        opaque: &["-s"],
        inert: &["-C"],
        ..runner("doas", spec("uC", &[]))
    },
    runner("busybox", NONE),
    Runner {
        input: Input::Items,
        ..runner(
            "xargs",
            OptSpec {
                short_arg: "adEILnPs",
                short_attached: "eil",
                long_arg: &[
                    "arg-file",
                    "delimiter",
                    "max-lines",
                    "max-args",
                    "max-procs",
                    "max-chars",
                    "process-slot-var",
                ],
                stop_at_operand: true,
            },
        )
    },
    Runner {
        form: Form::Joined,
        input: Input::Items,
        ..runner(
            "parallel",
            spec(
                "jPaIdnNLCSX",
                &[
                    "jobs",
                    "max-procs",
                    "arg-file",
                    "replace",
                    "delimiter",
                    "max-args",
                    "max-replace-args",
                    "max-lines",
                    "colsep",
                    "joblog",
                    "results",
                    "tmpdir",
                    "workdir",
                    "wd",
                    "timeout",
                    "delay",
                    "retries",
                    "tag-string",
                    "env",
                    "halt",
                    "memfree",
                    "load",
                    "sshlogin",
                    "basefile",
                ],
            ),
        )
    },
    Runner {
        form: Form::Joined,
        ..runner(
            "watch",
            spec(
                "nq",
                &["interval", "equexit", "differences", "chgexit", "beep"],
            ),
        )
    },
    Runner {
        skip: 1,
        script: &["-c", "--command"],
        ..runner(
            "flock",
            spec("wEc", &["wait", "timeout", "conflict-exit-code", "command"]),
        )
    },
    runner("chronic", NONE),
    runner("unbuffer", NONE),
    runner("caffeinate", spec("tw", &[])),
    Runner {
        skip: 1,
        ..runner("faketime", spec("f", &[]))
    },
    runner(
        "xvfb-run",
        spec(
            "nsfelp",
            &["server-num", "server-args", "auth-file", "error-file"],
        ),
    ),
    runner("dbus-run-session", NONE),
    // Project tools that run a command with the project's environment.
    tool(
        "uv",
        Some("run"),
        spec(
            "pw",
            &[
                "with",
                "with-requirements",
                "with-editable",
                "python",
                "package",
                "extra",
                "group",
                "env-file",
                "directory",
                "project",
                "index",
                "default-index",
                "index-url",
                "extra-index-url",
                "find-links",
                "script",
                "only-group",
                "no-group",
            ],
        ),
    ),
    tool("poetry", Some("run"), spec("CP", &["directory", "project"])),
    tool("pipenv", Some("run"), NONE),
    tool("pdm", Some("run"), spec("pg", &["project", "global"])),
    tool("hatch", Some("run"), NONE),
    tool("bundle", Some("exec"), NONE),
    tool("bundler", Some("exec"), NONE),
    Runner {
        script: &["-c", "--call"],
        ..tool(
            "npm",
            Some("exec"),
            spec("pcw", &["package", "call", "workspace"]),
        )
    },
    tool("pnpm", Some("exec"), spec("C", &["dir", "filter"])),
    tool("yarn", Some("exec"), NONE),
    Runner {
        skip: 1,
        ..tool("rustup", Some("run"), NONE)
    },
    Runner {
        script: &["-c", "--call"],
        ..tool("npx", None, spec("pc", &["package", "call"]))
    },
    Runner {
        script: &["-c", "--call"],
        ..tool("pnpx", None, spec("pc", &["package", "call"]))
    },
    tool("bunx", None, spec("p", &["package"])),
];

fn find(name: &str) -> impl Iterator<Item = &'static Runner> + '_ {
    RUNNERS.iter().filter(move |r| r.name == name)
}

/// Does `name` run a command from its arguments (possibly only through a subcommand)?
pub(crate) fn is_wrapper(name: &str) -> bool {
    find(name).next().is_some()
}

/// The command a runner runs.
pub(crate) struct Inner {
    /// Index in `args` where the command's argv starts.
    pub start: usize,
    /// A project tool's command: its program may be one installed with the project.
    pub tool: bool,
}

fn is_assignment(w: &Word) -> bool {
    let head = w.literal_head();
    match head.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// Reads a runner's arguments. Returns where the wrapped argv starts (None when it runs
/// nothing more to follow, like a bare `env` or `command -v x`, or when the command was pushed
/// as findings) and pushes what else it found: environment assignments, files it writes,
/// commands and shell text it runs, refusals. `input` is the text on its standard input when
/// that is known before running (`echo a b | xargs ...`, `xargs ... <<< a`).
pub(crate) fn inspect(
    name: &str,
    args: &[Word],
    input: Option<&str>,
    out: &mut Vec<Finding>,
) -> Option<Inner> {
    let r = find(name).find(|r| match r.sub {
        None => true,
        Some(sub) => args.first().and_then(Word::literal).as_deref() == Some(sub),
    })?;
    let args = if r.sub.is_some() { &args[1..] } else { args };
    let base = usize::from(r.sub.is_some());
    let s = scan(args, &r.opts);
    if let Some(o) = s.opts.iter().find(|o| r.opaque.contains(&o.name.as_str())) {
        out.push(Finding::refuse(
            "unsupported-wrapper",
            "this form builds the command from a string or runs a login shell, which cannot be checked",
            "write the command out directly",
            o.at,
        ));
        return None;
    }
    for v in s.values(r.script) {
        out.push(Finding::Script(v.clone()));
    }
    if s.has(r.inert) {
        return None;
    }
    out.extend(s.values(r.writes).cloned().map(Finding::Write));
    let Some(mut start) = s.first_operand() else {
        // `... | parallel`: every input line is a command.
        if r.form == Form::Joined && r.input == Input::Items {
            joined_commands(&[], &Items::from_lines(input), out);
        }
        return None;
    };
    // `env -` is the old spelling of `env -i`.
    if name == "env" && args[start].literal().as_deref() == Some("-") {
        start += 1;
    }
    if r.assignments {
        while start < args.len() && is_assignment(&args[start]) {
            out.push(Finding::Assign(args[start].clone()));
            start += 1;
        }
    }
    start += r.skip;
    // `flock FILE -c 'cmd'`: the shell-text option may follow the lock file.
    if !r.script.is_empty()
        && let Some(opt) = args.get(start).and_then(Word::literal)
        && r.script.contains(&opt.as_str())
    {
        out.extend(args.get(start + 1).cloned().map(Finding::Script));
        return None;
    }
    if start >= args.len() {
        return None;
    }
    let command = &args[start..];
    match (r.form, r.input) {
        (Form::Argv, Input::None) => Some(Inner {
            start: base + start,
            tool: r.tool,
        }),
        (Form::Argv, Input::Items) => {
            for run in xargs_commands(&s, command, input) {
                out.push(Finding::Run(run));
            }
            None
        }
        (Form::Joined, input_kind) => {
            let (template, sources) = match command.iter().position(is_source_marker) {
                Some(i) => (&command[..i], Some(&command[i..])),
                None => (command, None),
            };
            let items = match (input_kind, sources) {
                (Input::Items, Some(src)) => Items::from_sources(src),
                (Input::Items, None) => Items::from_lines(input),
                (Input::None, _) => Items::None,
            };
            joined_commands(template, &items, out);
            None
        }
    }
}

fn is_source_marker(w: &Word) -> bool {
    matches!(
        w.literal().as_deref(),
        Some(":::" | "::::" | ":::+" | "::::+")
    )
}

/// Stands for the home directory's path in known input (`echo ~ |` prints it): an item starting
/// with it is `~` expanded, unlike a literal `~` (which xargs passes on as is).
pub(crate) const HOME_MARK: char = '\u{E000}';

/// An input item as an argument word.
fn item_word(t: &str, span: (usize, usize)) -> Word {
    match t.strip_prefix(HOME_MARK) {
        Some(rest) => {
            let mut segs = vec![Seg::Bare("~".to_string())];
            if !rest.is_empty() {
                segs.push(Seg::Lit(rest.to_string()));
            }
            Word { segs, span }
        }
        None => Word::literal_text(t, span),
    }
}

/// An input item as shell text.
fn item_shell(t: &str) -> String {
    match t.strip_prefix(HOME_MARK) {
        Some("") => "~".to_string(),
        Some(rest) => format!("~/{}", super::word::quote(rest.trim_start_matches('/'))),
        None => super::word::quote(t),
    }
}

/// Most input items expanded into separate checks; past this, input counts as unknown.
const MAX_ITEMS: usize = 64;

/// What a runner's items (its input lines, `:::` arguments) are known to be.
enum Items {
    /// The runner takes no items.
    None,
    /// Known before running.
    Known(Vec<String>),
    /// Read at run time.
    Unknown,
}

impl Items {
    fn from_lines(input: Option<&str>) -> Items {
        match input {
            Some(text) => {
                let v: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect();
                Items::known(v)
            }
            None => Items::Unknown,
        }
    }

    fn from_sources(src: &[Word]) -> Items {
        let mut v = Vec::new();
        let mut literal_source = true;
        for w in src {
            if is_source_marker(w) {
                literal_source = matches!(w.literal().as_deref(), Some(":::" | ":::+"));
                continue;
            }
            match w.literal() {
                Some(t) if literal_source => v.push(t),
                _ => return Items::Unknown,
            }
        }
        Items::known(v)
    }

    fn known(v: Vec<String>) -> Items {
        if v.len() > MAX_ITEMS {
            Items::Unknown
        } else {
            Items::Known(v)
        }
    }
}

/// An item read at run time, as an argument: an expansion, so rules see it as unknown.
fn unknown_item(span: (usize, usize)) -> Word {
    Word {
        segs: vec![Seg::Dyn(DynKind::Param, "$INPUT".to_string())],
        span,
    }
}

const GNU_PARALLEL_REPLACE: &[&str] = &["{}", "{.}", "{/}", "{//}", "{/.}", "{#}", "{%}"];

/// `parallel`/`watch`: the template words joined are shell text, once per item (with `{}` and
/// friends replaced, or the item appended). No template: each item is a command.
fn joined_commands(template: &[Word], items: &Items, out: &mut Vec<Finding>) {
    let span = match (template.first(), template.last()) {
        (Some(a), Some(b)) => (a.span.0, b.span.1),
        _ => (0, 0),
    };
    let mut parts = Vec::with_capacity(template.len());
    for w in template {
        match w.literal() {
            Some(t) => parts.push(t),
            // Shell text built at run time: checked (and refused) as such.
            None => {
                out.push(Finding::Script(w.clone()));
                return;
            }
        }
    }
    let text = parts.join(" ");
    let has_replace = GNU_PARALLEL_REPLACE.iter().any(|r| text.contains(r));
    // Items are quoted into the template (GNU parallel quotes replacement strings); with no
    // template each item is a whole command.
    let render = |item: &str| {
        if text.is_empty() {
            return item.to_string();
        }
        let item = &item_shell(item);
        if has_replace {
            let mut t = text.clone();
            for r in GNU_PARALLEL_REPLACE {
                t = t.replace(r, item);
            }
            t
        } else {
            format!("{text} {item}")
        }
    };
    match items {
        Items::None => out.push(Finding::Script(Word::literal_text(&text, span))),
        Items::Known(v) if !v.is_empty() => {
            for item in v {
                out.push(Finding::Script(Word::literal_text(&render(item), span)));
            }
        }
        // Items that are whole commands, unknown: nothing to check but the template.
        _ if text.is_empty() => out.push(Finding::refuse(
            "dynamic-script",
            "the commands it runs are read at run time, so they cannot be checked",
            "write the commands out, one after the other",
            span,
        )),
        _ => {
            let t = if has_replace {
                GNU_PARALLEL_REPLACE
                    .iter()
                    .fold(text.clone(), |t, r| t.replace(r, "$INPUT"))
            } else {
                format!("{text} $INPUT")
            };
            out.push(Finding::Script(Word::literal_text(&t, span)))
        }
    }
}

/// What xargs really runs: with `-I R`/`-i`/`--replace`, every word holding `R` gets an input
/// line; otherwise input items are appended to the command. Known input (`echo / | xargs rm -rf`)
/// gives the exact commands; unknown input gives one command with an unknown argument.
fn xargs_commands(s: &Scan, command: &[Word], input: Option<&str>) -> Vec<Vec<Word>> {
    let replace = s
        .opts
        .iter()
        .filter(|o| matches!(o.name.as_str(), "-I" | "-i" | "--replace"))
        .map(|o| {
            o.value
                .as_ref()
                .and_then(Word::literal)
                .unwrap_or_else(|| "{}".to_string())
        })
        .next_back()
        .filter(|r| !r.is_empty());
    let from_file = s.has(&["-a", "--arg-file"]);
    let items = match input.filter(|_| !from_file) {
        None => Items::Unknown,
        Some(text) => {
            if replace.is_some() {
                Items::from_lines(Some(text))
            } else if s.has(&["-0", "--null"]) {
                Items::known(
                    text.split('\0')
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect(),
                )
            } else if let Some(d) = s.values(&["-d", "--delimiter"]).next() {
                match d.literal().as_deref() {
                    Some("\\n") => Items::from_lines(Some(text)),
                    Some(d) if d.chars().count() == 1 => Items::known(
                        text.split(d)
                            .filter(|t| !t.is_empty())
                            .map(String::from)
                            .collect(),
                    ),
                    _ => Items::Unknown,
                }
            } else {
                match split_blanks(text) {
                    Some(v) => Items::known(v),
                    None => Items::Unknown,
                }
            }
        }
    };
    let end = command.last().map_or((0, 0), |w| (w.span.1, w.span.1));
    match (replace, items) {
        (Some(r), Items::Known(v)) if !v.is_empty() => v
            .iter()
            .map(|item| {
                command
                    .iter()
                    .map(|w| match w.literal() {
                        Some(t) if t.contains(&r) => item_word(&t.replace(&r, item), w.span),
                        _ if w.canonical().contains(&r) => unknown_item(w.span),
                        _ => w.clone(),
                    })
                    .collect()
            })
            .collect(),
        (Some(r), _) => vec![
            command
                .iter()
                .map(|w| {
                    if w.canonical().contains(&r) {
                        unknown_item(w.span)
                    } else {
                        w.clone()
                    }
                })
                .collect(),
        ],
        (None, Items::Known(v)) => {
            let mut run = command.to_vec();
            run.extend(v.iter().map(|t| item_word(t, end)));
            vec![run]
        }
        (None, _) => {
            let mut run = command.to_vec();
            run.push(unknown_item(end));
            vec![run]
        }
    }
}

/// xargs' default splitting: blanks separate items, quotes and backslashes protect them.
/// `None` for an unterminated quote (xargs refuses that input).
fn split_blanks(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_item = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_item = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\n') | None => return None,
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_item = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_item {
                    out.push(std::mem::take(&mut cur));
                    in_item = false;
                }
            }
            c => {
                in_item = true;
                cur.push(c);
            }
        }
    }
    if in_item {
        out.push(cur);
    }
    Some(out)
}
