//! One simple command: allowlist, wrappers, shells, `eval`, and what its arguments run.

use super::*;

impl Eval<'_> {
    pub fn simple(
        &mut self,
        f: &Frame,
        argv: &[Word],
        stdin: &Stdin,
        at: (usize, usize),
        nest: usize,
    ) -> Check {
        let tool = std::mem::take(&mut self.tool_program);
        if nest > MAX_NEST {
            return self.too_complex(f, at);
        }
        let Some(prog) = argv.first() else {
            return Ok(());
        };
        let Some(path) = prog.literal() else {
            return self.refuse(
                f,
                prog.span,
                &prog.canonical(),
                "dynamic-program",
                "the program name is computed at run time, so the policy cannot tell what runs",
                "write the program name literally",
            );
        };
        let name = basename(&path).to_string();
        let args = &argv[1..];
        self.rules(
            f,
            RuleTarget::Command,
            &command_text(&name, args),
            at,
            &name,
        )?;
        // After `cd /`, `rm -rf *` acts on `/*`: the rules see it that way too.
        if let Some(resolved) = self.resolved_args(args) {
            self.rules(
                f,
                RuleTarget::Command,
                &command_text(&name, &resolved),
                at,
                &name,
            )?;
        }

        let is_function = !path.contains('/') && self.is_function(&name, prog.span.0);
        let is_builtin = !path.contains('/')
            && (SHELL_BUILTINS.contains(&name.as_str())
                || ANALYSED_BUILTINS.contains(&name.as_str()));
        if PRIVILEGE.contains(&name.as_str())
            && !(self.policy.allow_sudo && matches!(name.as_str(), "sudo" | "doas"))
        {
            return self.refuse(
                f,
                prog.span,
                &name,
                "privilege-escalation",
                "commands run without extra privileges here",
                "drop the sudo/doas and run the command as is",
            );
        }
        let project_tool = tool && self.policy.allow_local_programs;
        if !is_function && !is_builtin && !project_tool {
            self.program_allowed(f, prog, &path, &name)?;
        }
        if is_builtin && matches!(name.as_str(), "cd" | "pushd" | "popd") {
            self.change_dir(&name, args);
        }

        match name.as_str() {
            "eval" if !is_function => return self.eval_builtin(f, args, at),
            "source" | "." if !is_function && args.first().is_some_and(reads_stdin_path) => {
                return self.shell(f, &name, &[], stdin);
            }
            "source" | "."
                if !is_function && args.first().is_some_and(|w| w.has_dyn(DynKind::Process)) =>
            {
                return self.refuse(
                    f,
                    args[0].span,
                    &name,
                    "dynamic-script",
                    "the sourced script is produced at run time and cannot be checked",
                    "save the script to a file, inspect it, then source that file",
                );
            }
            n if SHELLS.contains(&n) && !is_function => {
                return self.shell(f, &name, args, stdin);
            }
            _ => {}
        }

        let mut found = Vec::new();
        let inner = if wrappers::is_wrapper(&name) {
            wrappers::inspect(&name, args, stdin.known_text(), &mut found)
        } else {
            programs::inspect(&name, args, &mut found);
            None
        };
        for finding in found {
            self.finding(f, finding, &name, nest)?;
        }
        if let Some(inner) = inner {
            let rest = &args[inner.start..];
            self.tool_program = inner.tool;
            self.simple(f, rest, stdin, words_span(rest), nest + 1)?;
        }
        Ok(())
    }

    pub(super) fn program_allowed(&self, f: &Frame, prog: &Word, path: &str, name: &str) -> Check {
        if self.policy.deny_programs.contains(name) {
            return self.refuse(
                f,
                prog.span,
                name,
                "denied-program",
                &format!("`{name}` is denied by this worker's configuration"),
                "use another tool for the task",
            );
        }
        let local = path.contains('/') && !path.starts_with('/') && !path.starts_with('~');
        if self.policy.allows(name) || (local && self.policy.allow_local_programs) {
            return Ok(());
        }
        self.refuse(
            f,
            prog.span,
            name,
            "not-allowed",
            &format!("`{name}` is not on this worker's program allowlist"),
            "use an allowed tool (`opencode-worker policy check` shows the decision) or ask the operator to add it",
        )
    }

    pub(super) fn eval_builtin(&mut self, f: &Frame, args: &[Word], at: (usize, usize)) -> Check {
        let mut parts = Vec::with_capacity(args.len());
        for a in args {
            match a.literal() {
                Some(t) => parts.push(t),
                None => {
                    return self.refuse(
                        f,
                        a.span,
                        "eval",
                        "dynamic-eval",
                        "eval runs text built at run time, which cannot be checked",
                        "write the command out rather than building it in a string",
                    );
                }
            }
        }
        let script = parts.join(" ");
        let map = match args {
            [one] => self.map_for(f, one, &script),
            [] => SpanMap::Whole(f.map.to_top(at)),
            _ => SpanMap::Whole(f.map.to_top(words_span(args))),
        };
        self.check_script(&script, map, f.depth + 1)
    }

    pub(super) fn shell(&mut self, f: &Frame, name: &str, args: &[Word], stdin: &Stdin) -> Check {
        let mut i = 0;
        let mut has_c = false;
        let mut from_stdin = false;
        while i < args.len() {
            let Some(t) = args[i].literal() else {
                return self.refuse(
                    f,
                    args[i].span,
                    name,
                    "dynamic-script",
                    "the shell's options or script are computed at run time",
                    "write the script literally",
                );
            };
            if t == "--" || t == "-" {
                i += 1;
                break;
            }
            if t.starts_with("--") {
                i += if matches!(t.as_str(), "--rcfile" | "--init-file") {
                    2
                } else {
                    1
                };
                continue;
            }
            if t.len() > 1 && (t.starts_with('-') || t.starts_with('+')) {
                for c in t.chars().skip(1) {
                    match c {
                        'c' => has_c = true,
                        's' => from_stdin = true,
                        'o' | 'O' => i += 1,
                        _ => {}
                    }
                }
                i += 1;
                continue;
            }
            break;
        }
        if has_c {
            return match args.get(i) {
                Some(w) => self.script_word(f, w, name),
                None => Ok(()),
            };
        }
        if !from_stdin && let Some(w) = args.get(i).filter(|w| !reads_stdin_path(w)) {
            if w.has_dyn(DynKind::Process) {
                return self.refuse(
                    f,
                    w.span,
                    name,
                    "dynamic-script",
                    "the script is produced at run time by a process substitution",
                    "save the script to a file, inspect it, then run that file",
                );
            }
            // A script file: as opaque as any program's input, like `python script.py`.
            return Ok(());
        }
        match stdin {
            Stdin::File => Ok(()),
            Stdin::Script(text, map) => self.check_script(text, *map, f.depth + 1),
            Stdin::Dynamic => self.refuse(
                f,
                (0, f.src.len()),
                name,
                "dynamic-script",
                "the shell reads a script that is expanded at run time",
                "quote the heredoc delimiter (<<'EOF') or pass the script with -c",
            ),
            Stdin::Pipe | Stdin::Inherit | Stdin::Known(_) => {
                let at = args.first().map_or((0, f.src.len()), |w| w.span);
                self.refuse(
                    f,
                    at,
                    name,
                    "shell-stdin",
                    "the shell would run whatever arrives on its standard input, which cannot be checked",
                    "pass the script with `-c '...'`, a quoted heredoc, or a script file",
                )
            }
        }
    }

    pub(super) fn script_word(&mut self, f: &Frame, w: &Word, program: &str) -> Check {
        match w.literal() {
            Some(t) => {
                let map = self.map_for(f, w, &t);
                self.check_script(&t, map, f.depth + 1)
            }
            None => self.refuse(
                f,
                w.span,
                program,
                "dynamic-script",
                "the shell text is built at run time, so what it runs cannot be checked",
                "write the shell text literally",
            ),
        }
    }

    pub(super) fn finding(
        &mut self,
        f: &Frame,
        finding: Finding,
        program: &str,
        nest: usize,
    ) -> Check {
        match finding {
            Finding::Run(words) => {
                let at = words_span(&words);
                self.simple(f, &words, &Stdin::Inherit, at, nest + 1)
            }
            Finding::Script(w) => self.script_word(f, &w, program),
            Finding::Assign(w) => {
                let head = w.literal_head();
                let name = head.split('=').next().unwrap_or_default().to_string();
                let value = w.strip_literal_prefix(&format!("{name}="));
                self.assignment(f, &name, value.as_ref(), w.span)
            }
            Finding::Write(w) => self.path_rules(f, RuleTarget::Write, &w, w.span, program),
            Finding::Refuse {
                rule,
                reason,
                suggestion,
                at,
            } => self.refuse(f, at, program, rule, reason, suggestion),
        }
    }

    pub(super) fn assignment_node(&mut self, f: &Frame, node: Node) -> Check {
        let Some(name) = node.child_by_field_name("name") else {
            return Ok(());
        };
        let value = match node.child_by_field_name("value") {
            Some(v) => Some(self.word(f, v)?),
            None => None,
        };
        let name = text(f, name).to_string();
        self.assignment(f, &name, value.as_ref(), span(node))
    }

    pub(super) fn assignment(
        &mut self,
        f: &Frame,
        name: &str,
        value: Option<&Word>,
        at: (usize, usize),
    ) -> Check {
        let shown = value.map(|v| v.canonical()).unwrap_or_default();
        self.rules(f, RuleTarget::Env, &format!("{name}={shown}"), at, "")?;
        if !COMMAND_VARS.contains(&name) {
            return Ok(());
        }
        match value {
            Some(v) if v.literal().is_some_and(|t| t.is_empty()) => Ok(()),
            Some(v) => self.script_word(f, v, name),
            None => Ok(()),
        }
    }
}

/// A script path that is really the shell's standard input.
fn reads_stdin_path(w: &Word) -> bool {
    matches!(
        w.literal().as_deref(),
        Some("/dev/stdin" | "/dev/fd/0" | "/proc/self/fd/0")
    )
}
