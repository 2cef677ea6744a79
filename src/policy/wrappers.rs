//! Programs that run another program: where in their arguments the real command starts.

use super::finding::Finding;
use super::opts::{OptSpec, scan};
use super::word::{DynKind, Seg, Word};

const fn spec(short_arg: &'static str, long_arg: &'static [&'static str]) -> OptSpec {
    OptSpec {
        short_arg,
        short_attached: "",
        long_arg,
        stop_at_operand: true,
    }
}

const ENV: OptSpec = spec("uCS", &["unset", "chdir", "split-string"]);
const NICE: OptSpec = spec("n", &["adjustment"]);
const TIMEOUT: OptSpec = spec("sk", &["signal", "kill-after"]);
const TIME: OptSpec = spec("fo", &["format", "output"]);
const STDBUF: OptSpec = spec("ioe", &["input", "output", "error"]);
const IONICE: OptSpec = spec("cnpPu", &["class", "classdata", "pid", "pgid", "uid"]);
const TASKSET: OptSpec = spec("", &[]);
const EXEC: OptSpec = spec("a", &[]);
const NONE: OptSpec = spec("", &[]);
const SUDO: OptSpec = spec(
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
);
const DOAS: OptSpec = spec("uC", &[]);
const XARGS: OptSpec = OptSpec {
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
};

pub(crate) fn is_wrapper(name: &str) -> bool {
    matches!(
        name,
        "env"
            | "nice"
            | "nohup"
            | "timeout"
            | "time"
            | "stdbuf"
            | "ionice"
            | "setsid"
            | "taskset"
            | "xargs"
            | "command"
            | "builtin"
            | "exec"
            | "sudo"
            | "doas"
            | "busybox"
    )
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

/// Reads a wrapper's arguments. Returns the index in `args` where the wrapped command starts
/// (None when the wrapper runs nothing, like a bare `env` or `command -v x`) and pushes what else
/// it found: environment assignments, files it writes, refusals.
pub(crate) fn inspect(name: &str, args: &[Word], out: &mut Vec<Finding>) -> Option<usize> {
    let spec = match name {
        "env" => &ENV,
        "nice" => &NICE,
        "timeout" => &TIMEOUT,
        "time" => &TIME,
        "stdbuf" => &STDBUF,
        "ionice" => &IONICE,
        "taskset" => &TASKSET,
        "xargs" => &XARGS,
        "exec" => &EXEC,
        "sudo" => &SUDO,
        "doas" => &DOAS,
        _ => &NONE,
    };
    let s = scan(args, spec);
    let opaque = s.opts.iter().find(|o| match name {
        "env" => o.name == "-S" || o.name == "--split-string",
        "sudo" => matches!(o.name.as_str(), "-s" | "-i" | "--shell" | "--login"),
        _ => false,
    });
    if let Some(o) = opaque {
        out.push(Finding::refuse(
            "unsupported-wrapper",
            "this form builds the command from a string or runs a login shell, which cannot be checked",
            "write the command out directly",
            o.at,
        ));
        return None;
    }
    let mut start = s.first_operand()?;
    match name {
        "env" | "sudo" => {
            // `env -` is the old spelling of `env -i`.
            if name == "env" && args[start].literal().as_deref() == Some("-") {
                start += 1;
            }
            while start < args.len() && is_assignment(&args[start]) {
                out.push(Finding::Assign(args[start].clone()));
                start += 1;
            }
        }
        "doas" if s.has(&["-s"]) || s.has(&["-C"]) => {
            if let Some(o) = s.opts.iter().find(|o| o.name == "-s") {
                out.push(Finding::refuse(
                    "unsupported-wrapper",
                    "`doas -s` runs a shell, which cannot be checked",
                    "write the command out directly",
                    o.at,
                ));
            }
            return None;
        }
        "command" if s.has(&["-v", "-V"]) => return None,
        "ionice" if s.has(&["-p", "-P", "-u", "--pid", "--pgid", "--uid"]) => return None,
        "taskset" => {
            if s.has(&["-p", "--pid"]) {
                return None;
            }
            // The first operand is the CPU mask or list.
            start += 1;
        }
        "timeout" => start += 1,
        "xargs" => {
            out.push(Finding::Run(xargs_command(&s, &args[start..])));
            return None;
        }
        "time" => {
            for w in s.values(&["-o", "--output"]) {
                out.push(Finding::Write(w.clone()));
            }
        }
        _ => {}
    }
    (start < args.len()).then_some(start)
}

/// What xargs really runs: with `-I R`/`-i`/`--replace`, every word holding `R` is replaced by
/// input read at run time; otherwise input words are appended to the command.
fn xargs_command(s: &super::opts::Scan, command: &[Word]) -> Vec<Word> {
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
        .next_back();
    let input = |span| Word {
        segs: vec![Seg::Dyn(DynKind::Param, "$XARGS_INPUT".to_string())],
        span,
    };
    match replace {
        Some(r) if !r.is_empty() => command
            .iter()
            .map(|w| {
                if w.canonical().contains(&r) {
                    input(w.span)
                } else {
                    w.clone()
                }
            })
            .collect(),
        _ => {
            let mut v = command.to_vec();
            let end = command.last().map_or((0, 0), |w| (w.span.1, w.span.1));
            v.push(input(end));
            v
        }
    }
}
