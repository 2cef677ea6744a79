//! git: configuration that makes git run programs, and subcommands that run shell text.

use std::sync::LazyLock;

use regex::Regex;

use super::finding::Finding;
use super::opts::{OptSpec, scan};
use super::word::Word;

/// Config keys whose value git executes (or that point git at code to execute).
static EXEC_KEY: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(core\.(sshcommand|pager|editor|hookspath|fsmonitor|askpass|gitproxy)|sequence\.editor|diff\.external|diff\..+\.(textconv|command)|merge\..+\.driver|filter\..+\.(clean|smudge|process)|credential\.(.+\.)?helper|alias\..+|gpg\.(.+\.)?program|pager\..+|uploadpack\.packobjectshook|protocol\.ext\.allow|include\.path|includeif\..+\.path|remote\..+\.(uploadpack|receivepack)|(difftool|mergetool|browser|man)\..+\.(cmd|path)|web\.browser|interactive\.difffilter|ssh\.variant|url\..+\.insteadof)$",
    )
    .ok()
});

fn is_exec_key(key: &str) -> bool {
    // The regex is a constant; if it somehow failed to build, refuse every key rather than none.
    EXEC_KEY.as_ref().is_none_or(|r| r.is_match(key))
}

const REASON: &str = "this git setting makes git run a program the policy cannot see";
const SUGGESTION: &str =
    "run the program yourself as its own command and leave git's configuration alone";

const GLOBAL: OptSpec = OptSpec {
    short_arg: "cC",
    short_attached: "",
    long_arg: &[
        "git-dir",
        "work-tree",
        "namespace",
        "super-prefix",
        "config-env",
    ],
    stop_at_operand: true,
};

const CONFIG: OptSpec = OptSpec {
    short_arg: "f",
    short_attached: "",
    long_arg: &["file", "blob", "type", "default", "comment", "value"],
    stop_at_operand: false,
};

pub(crate) fn inspect(args: &[Word], out: &mut Vec<Finding>) {
    let global = scan(args, &GLOBAL);
    for opt in &global.opts {
        match opt.name.as_str() {
            "-c" => {
                let Some(value) = opt.value.as_ref() else {
                    continue;
                };
                let head = value.literal_head();
                let key_is_dynamic = !head.contains('=') && value.is_dynamic();
                let key = head.split('=').next().unwrap_or_default();
                if key_is_dynamic || is_exec_key(key) {
                    out.push(Finding::refuse(
                        "git-config-exec",
                        REASON,
                        SUGGESTION,
                        opt.at,
                    ));
                }
            }
            "--config-env" => out.push(Finding::refuse(
                "git-config-exec",
                REASON,
                SUGGESTION,
                opt.at,
            )),
            // Without a value it only prints the path.
            "--exec-path" if opt.value.is_some() => out.push(Finding::refuse(
                "git-config-exec",
                REASON,
                SUGGESTION,
                opt.at,
            )),
            _ => {}
        }
    }
    let Some(sub_at) = global.first_operand() else {
        return;
    };
    let sub = args[sub_at].literal().unwrap_or_default();
    let rest = &args[sub_at + 1..];
    match sub.as_str() {
        "config" => config(rest, out),
        "rebase" => {
            let s = scan(
                rest,
                &OptSpec {
                    short_arg: "xsX",
                    short_attached: "",
                    long_arg: &["exec", "onto", "strategy", "strategy-option"],
                    stop_at_operand: false,
                },
            );
            for w in s.values(&["-x", "--exec"]) {
                out.push(Finding::Script(w.clone()));
            }
        }
        "submodule" => {
            let Some(pos) = rest
                .iter()
                .position(|w| w.literal().as_deref() == Some("foreach"))
            else {
                return;
            };
            let cmd: Vec<Word> = rest[pos + 1..]
                .iter()
                .skip_while(|w| w.literal().is_some_and(|t| t.starts_with("--")))
                .cloned()
                .collect();
            push_command(cmd, out);
        }
        "bisect" if rest.len() > 1 && rest[0].literal().as_deref() == Some("run") => {
            out.push(Finding::Run(rest[1..].to_vec()));
        }
        "filter-branch" => {
            let mut i = 0;
            while i < rest.len() {
                let t = rest[i].literal().unwrap_or_default();
                if t.starts_with("--") && t.ends_with("-filter") {
                    if let Some(w) = rest.get(i + 1) {
                        out.push(Finding::Script(w.clone()));
                    }
                    i += 1;
                }
                i += 1;
            }
        }
        _ => {}
    }
}

/// git joins a multi-word command with spaces and runs it through a shell.
fn push_command(cmd: Vec<Word>, out: &mut Vec<Finding>) {
    match cmd.len() {
        0 => {}
        1 => out.extend(cmd.into_iter().map(Finding::Script)),
        _ => out.push(Finding::Run(cmd)),
    }
}

fn config(args: &[Word], out: &mut Vec<Finding>) {
    let s = scan(args, &CONFIG);
    let read_only = s.has(&[
        "--get",
        "--get-all",
        "--get-regexp",
        "--get-urlmatch",
        "--list",
        "-l",
        "--unset",
        "--unset-all",
        "--remove-section",
        "--rename-section",
        "--show-origin",
        "--name-only",
        "--edit",
        "-e",
    ]);
    let mut operands: Vec<&Word> = s.operands.iter().map(|&i| &args[i]).collect();
    // `git config set|get|unset|list ...` (git 2.46+)
    match operands.first().and_then(|w| w.literal()).as_deref() {
        Some("get" | "list" | "unset" | "remove-section" | "rename-section" | "edit") => return,
        Some("set") => {
            operands.remove(0);
        }
        _ if read_only || operands.len() < 2 => return,
        _ => {}
    }
    if let Some(key) = operands.first()
        && (is_exec_key(&key.literal_head()) || key.is_dynamic())
    {
        out.push(Finding::refuse(
            "git-config-exec",
            REASON,
            SUGGESTION,
            key.span,
        ));
    }
}
