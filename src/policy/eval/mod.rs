//! Walks a parse tree and checks every command it would run.

use std::time::{Duration, Instant};

use tree_sitter::Node;

use super::Policy;
use super::config::RuleTarget;
use super::defaults::{COMMAND_VARS, PRIVILEGE, SHELL_BUILTINS, SHELLS};
use super::finding::Finding;
use super::parse::{ParseFailure, parse};
use super::refusal::Refusal;
use super::word::{self, DynKind, Word};
use super::{programs, wrappers};

mod cwd;
mod guards;
mod simple;

use guards::has_backquote;

pub(crate) type Check = Result<(), Box<Refusal>>;

/// Deepest syntax nesting followed (subshells in subshells, wrappers in wrappers).
const MAX_NEST: usize = 120;
/// Most tree nodes visited for one check, over every nested script.
const MAX_VISITS: usize = 200_000;
/// Wall-clock budget for one check, parse included.
const BUDGET: Duration = Duration::from_millis(250);
/// Most words one brace expansion may produce before the policy gives up on it.
const MAX_BRACE_WORDS: usize = 256;

/// Builtins handled here rather than by the allowlist.
const ANALYSED_BUILTINS: &[&str] = &[
    "eval", "source", ".", "exec", "command", "builtin", "trap", "alias",
];

/// How positions in a nested script map back to the text the caller gave.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SpanMap {
    /// Local byte `i` is byte `base + i` of the original text.
    Offset(usize),
    /// The script was rebuilt (unescaped, joined): everything points at this span.
    Whole((usize, usize)),
}

impl SpanMap {
    fn to_top(self, (s, e): (usize, usize)) -> (usize, usize) {
        match self {
            SpanMap::Offset(b) => (b + s, b + e),
            SpanMap::Whole(w) => w,
        }
    }
}

pub(crate) struct Frame<'s> {
    pub src: &'s str,
    pub map: SpanMap,
    pub depth: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Stdin {
    /// Whatever the job's stdin is.
    Inherit,
    /// The previous command of a pipeline.
    Pipe,
    /// A file (`< file`).
    File,
    /// Text known before running (a quoted heredoc, a literal here-string).
    Script(String, SpanMap),
    /// Text built at run time.
    Dynamic,
    /// The output of the previous pipeline stage, known before running (`echo a b |`).
    Known(String),
}

impl Stdin {
    /// The text a program will read, when it is known before running.
    pub fn known_text(&self) -> Option<&str> {
        match self {
            Stdin::Script(t, _) | Stdin::Known(t) => Some(t),
            _ => None,
        }
    }
}

pub(crate) struct Eval<'p> {
    policy: &'p Policy,
    top: &'p str,
    /// Functions of the script being walked: (name, end of its definition).
    functions: Vec<(String, usize)>,
    visits: usize,
    deadline: Instant,
    /// The shell's working directory as far as it is known: `.` where the job starts, a path
    /// relative to that, an absolute path, `~`-based, or `None` once it cannot be known.
    cwd: Option<String>,
    /// The next simple command is a project tool's (`uv run X`): see `wrappers::Inner::tool`.
    tool_program: bool,
}

fn basename(path: &str) -> &str {
    path.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

fn span(node: Node) -> (usize, usize) {
    (node.start_byte(), node.end_byte())
}

fn text<'s>(f: &Frame<'s>, node: Node) -> &'s str {
    f.src.get(node.start_byte()..node.end_byte()).unwrap_or("")
}

fn words_span(words: &[Word]) -> (usize, usize) {
    match (words.first(), words.last()) {
        (Some(a), Some(b)) => (a.span.0, b.span.1),
        _ => (0, 0),
    }
}

/// Canonical text of a simple command for `command` rules: the program's base name, then each
/// argument canonical and brace-expanded.
pub(crate) fn command_text(name: &str, args: &[Word]) -> String {
    let mut out = String::from(name);
    for a in args {
        let canon = a.canonical();
        match word::expand_braces(&canon, MAX_BRACE_WORDS) {
            Some(parts) => {
                for p in parts {
                    out.push(' ');
                    out.push_str(&p);
                }
            }
            None => {
                out.push(' ');
                out.push_str(&canon);
            }
        }
    }
    out
}

/// Children in source order, splicing in children of nested nodes of the same kind: `a && b && c`
/// nests to the left, and recursing down that spine would grow the stack with the list length.
fn flatten<'t>(node: Node<'t>) -> Vec<Node<'t>> {
    let kind = node.kind();
    let mut out = Vec::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        let mut cursor = n.walk();
        let children: Vec<Node> = n.named_children(&mut cursor).collect();
        for c in children.into_iter().rev() {
            if c.kind() == kind {
                stack.push(c);
            } else {
                out.push(c);
            }
        }
    }
    // Popping reversed-pushed nodes yields them last-first within each spliced level; sort to
    // restore source order.
    out.sort_by_key(|n| n.start_byte());
    out
}

/// (field name, child) for every child, named or not.
fn fields<'t>(node: Node<'t>) -> Vec<(Option<&'t str>, Node<'t>)> {
    let mut out = Vec::new();
    let mut c = node.walk();
    if c.goto_first_child() {
        loop {
            out.push((c.field_name(), c.node()));
            if !c.goto_next_sibling() {
                break;
            }
        }
    }
    out
}

impl<'p> Eval<'p> {
    pub fn new(policy: &'p Policy, top: &'p str) -> Self {
        Eval {
            policy,
            top,
            functions: Vec::new(),
            visits: 0,
            deadline: Instant::now() + BUDGET,
            cwd: Some(".".to_string()),
            tool_program: false,
        }
    }

    pub fn refusal(
        &self,
        map: SpanMap,
        local: (usize, usize),
        program: &str,
        rule: &str,
        reason: &str,
        suggestion: &str,
    ) -> Box<Refusal> {
        let (mut s, mut e) = map.to_top(local);
        // Spans always land on the original text's char boundaries; clamp defensively.
        e = e.min(self.top.len());
        s = s.min(e);
        while s > 0 && !self.top.is_char_boundary(s) {
            s -= 1;
        }
        while e < self.top.len() && !self.top.is_char_boundary(e) {
            e += 1;
        }
        Box::new(Refusal {
            command: self.top.to_string(),
            program: program.to_string(),
            rule: rule.to_string(),
            reason: reason.to_string(),
            span: (s, e),
            suggestion: suggestion.to_string(),
        })
    }

    fn refuse(
        &self,
        f: &Frame,
        local: (usize, usize),
        program: &str,
        rule: &str,
        reason: &str,
        suggestion: &str,
    ) -> Check {
        Err(self.refusal(f.map, local, program, rule, reason, suggestion))
    }

    fn too_complex(&self, f: &Frame, local: (usize, usize)) -> Check {
        self.refuse(
            f,
            local,
            "",
            "too-complex",
            "the command is too deeply nested or too large to check in time",
            "split it into simpler commands or put it in a script file",
        )
    }

    fn tick(&mut self, f: &Frame, node: Node, nest: usize) -> Check {
        self.visits += 1;
        let late = self.visits.is_multiple_of(64) && Instant::now() > self.deadline;
        if nest > MAX_NEST || self.visits > MAX_VISITS || late {
            return self.too_complex(f, span(node));
        }
        Ok(())
    }

    fn rules(
        &self,
        f: &Frame,
        on: RuleTarget,
        text: &str,
        at: (usize, usize),
        program: &str,
    ) -> Check {
        for rule in self.policy.rules_for(on) {
            if rule.matches(text) {
                return self.refuse(f, at, program, &rule.name, &rule.reason, &rule.suggestion);
            }
        }
        Ok(())
    }

    /// Where a literal word's text sits in the original: exactly when the word is written plainly
    /// or in one pair of quotes, otherwise the whole word.
    fn map_for(&self, f: &Frame, w: &Word, value: &str) -> SpanMap {
        let raw = f.src.get(w.span.0..w.span.1).unwrap_or("");
        if let SpanMap::Offset(_) = f.map {
            if raw == value {
                return SpanMap::Offset(f.map.to_top((w.span.0, w.span.0)).0);
            }
            let quoted = raw.len() == value.len() + 2
                && (raw.starts_with('\'') || raw.starts_with('"'))
                && raw.get(1..raw.len() - 1) == Some(value);
            if quoted {
                return SpanMap::Offset(f.map.to_top((w.span.0, w.span.0)).0 + 1);
            }
        }
        SpanMap::Whole(f.map.to_top(w.span))
    }

    // ---- scripts -------------------------------------------------------------------------

    pub fn check_script(&mut self, src: &str, map: SpanMap, depth: usize) -> Check {
        let whole = (0, src.len());
        let f = Frame { src, map, depth };
        if depth > self.policy.max_depth {
            return self.refuse(
                &f,
                whole,
                "",
                "too-deep",
                "shell strings are nested deeper than the policy follows",
                "run the innermost command directly",
            );
        }
        let tree = match parse(src, self.deadline) {
            Ok(t) => t,
            Err(ParseFailure::TimedOut) => return self.too_complex(&f, whole),
            Err(ParseFailure::Unavailable) => {
                return self.refuse(
                    &f,
                    whole,
                    "",
                    "parse-error",
                    "the shell parser is unavailable",
                    "report this to the worker's operator",
                );
            }
        };
        let root = tree.root_node();
        if root.has_error() {
            let at = self.first_error(root).map_or(whole, span);
            return self.refuse(
                &f,
                at,
                "",
                "parse-error",
                "this is not valid shell syntax as the policy reads it",
                "fix the syntax or write the command more simply (one heredoc per line, no `<>` redirection)",
            );
        }
        self.check_continuations(&f, root)?;
        // A nested script is another shell (or an `eval` the policy treats as one): it neither
        // sees nor leaves behind function definitions.
        let outer = std::mem::take(&mut self.functions);
        let cwd = self.cwd.clone();
        let result = self
            .collect_functions(&f, root)
            .and_then(|()| self.walk(&f, root, &Stdin::Inherit, 0));
        self.functions = outer;
        self.cwd = cwd;
        result
    }

    fn first_error<'t>(&mut self, root: Node<'t>) -> Option<Node<'t>> {
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            self.visits += 1;
            if n.is_error() || n.is_missing() {
                return Some(n);
            }
            if self.visits > MAX_VISITS {
                return None;
            }
            let mut c = n.walk();
            let children: Vec<Node> = n.children(&mut c).filter(|c| c.has_error()).collect();
            stack.extend(children.into_iter().rev());
        }
        None
    }

    // ---- the tree walk -------------------------------------------------------------------

    fn walk(&mut self, f: &Frame, node: Node, stdin: &Stdin, nest: usize) -> Check {
        self.tick(f, node, nest)?;
        match node.kind() {
            "program" | "list" => {
                for c in flatten(node) {
                    self.walk(f, c, stdin, nest + 1)?;
                }
                Ok(())
            }
            "pipeline" => self.pipeline(f, node, stdin, nest),
            "redirected_statement" => self.redirected(f, node, stdin, nest),
            "command" => self.command(f, node, stdin, nest),
            "variable_assignment" => {
                self.assignment_node(f, node)?;
                self.children(f, node, &Stdin::Inherit, nest)
            }
            "function_definition" => {
                self.fork_bomb(f, node)?;
                self.in_subshell(|ev| ev.children(f, node, stdin, nest))
            }
            "file_redirect" => {
                self.file_redirect(f, node)?;
                self.children(f, node, &Stdin::Inherit, nest)
            }
            "heredoc_redirect" => self.heredoc_redirect(f, node, stdin, nest),
            "command_substitution" if text(f, node).starts_with('`') => {
                self.backquoted(f, node)
            }
            "command_substitution" => {
                self.in_subshell(|ev| ev.children(f, node, &Stdin::Inherit, nest))
            }
            "process_substitution" => {
                // `>(cmd)` reads what the outer command writes into it.
                let inner = if text(f, node).starts_with('>') {
                    Stdin::Pipe
                } else {
                    Stdin::Inherit
                };
                self.in_subshell(|ev| ev.children(f, node, &inner, nest))
            }
            "subshell" => self.in_subshell(|ev| ev.children(f, node, stdin, nest)),
            "word" | "string_content" | "heredoc_content" | "regex" | "extglob_pattern"
                if has_backquote(text(f, node)) =>
            {
                self.refuse(
                    f,
                    span(node),
                    "",
                    "unsupported-syntax",
                    "a backquoted substitution here is not parsed the way the shell runs it",
                    "use $(...) rather than backquotes",
                )
            }
            // `${x@P}` expands x as a prompt string, which runs command substitutions in it.
            "expansion" if text(f, node).contains("@P") => self.refuse(
                f,
                span(node),
                "",
                "unsupported-syntax",
                "prompt expansion (`${var@P}`) can run commands hidden in the variable",
                "print the variable without @P",
            ),
            "heredoc_body" if self.unquoted_body_has_backquote(f, node) => self.refuse(
                f,
                span(node),
                "",
                "unsupported-syntax",
                "backquotes in an unquoted heredoc run commands, and the policy cannot read them there",
                "quote the delimiter (<<'EOF') to keep the text literal, or use $(...)",
            ),
            "comment" | "heredoc_start" | "heredoc_end" | "heredoc_content" | "string_content"
            | "raw_string" | "ansi_c_string" | "word" | "variable_name" | "special_variable_name"
            | "file_descriptor" | "test_operator" | "regex" | "extglob_pattern" => Ok(()),
            "compound_statement" | "do_group" | "if_statement" | "elif_clause"
            | "else_clause" | "while_statement" | "for_statement" | "c_style_for_statement"
            | "case_statement" | "case_item" | "negated_command" | "test_command"
            | "declaration_command" | "unset_command" | "variable_assignments"
            | "herestring_redirect" | "heredoc_body" | "command_name" | "string"
            | "translated_string" | "concatenation" | "simple_expansion" | "expansion"
            | "arithmetic_expansion" | "number" | "array" | "brace_expression"
            | "binary_expression" | "unary_expression" | "ternary_expression"
            | "postfix_expression" | "parenthesized_expression" | "subscript" => {
                self.children(f, node, stdin, nest)
            }
            kind => self.refuse(
                f,
                span(node),
                "",
                "unsupported-syntax",
                &format!("the policy does not analyse `{kind}` constructs"),
                "rewrite the command with plain commands, pipes, lists, loops and conditionals",
            ),
        }
    }

    fn children(&mut self, f: &Frame, node: Node, stdin: &Stdin, nest: usize) -> Check {
        let mut c = node.walk();
        let kids: Vec<Node> = node.named_children(&mut c).collect();
        for k in kids {
            self.walk(f, k, stdin, nest + 1)?;
        }
        Ok(())
    }

    fn pipeline(&mut self, f: &Frame, node: Node, stdin: &Stdin, nest: usize) -> Check {
        let stages = flatten(node);
        if self.policy.has_rules_for(RuleTarget::Pipeline) {
            let rendered: Vec<String> = stages.iter().map(|s| self.stage_text(f, *s)).collect();
            self.rules(
                f,
                RuleTarget::Pipeline,
                &rendered.join(" | "),
                span(node),
                "",
            )?;
        }
        // Each stage runs in a subshell of its own: a `cd` in one moves none of the others.
        let mut io = stdin.clone();
        let last = stages.len().saturating_sub(1);
        for (i, s) in stages.into_iter().enumerate() {
            self.in_subshell(|ev| ev.walk(f, s, &io, nest + 1))?;
            if i < last {
                io = self.output_of(f, s).map_or(Stdin::Pipe, Stdin::Known);
            }
        }
        Ok(())
    }

    /// A pipeline stage as `pipeline` rules see it: wrappers peeled, base names.
    fn stage_text(&self, f: &Frame, stage: Node) -> String {
        let cmd = match stage.kind() {
            "command" => Some(stage),
            "redirected_statement" => stage
                .child_by_field_name("body")
                .filter(|b| b.kind() == "command"),
            _ => None,
        };
        let Some(argv) = cmd.and_then(|c| self.argv(f, c).ok()).map(|(argv, _)| argv) else {
            return "(...)".to_string();
        };
        let mut rest: &[Word] = &argv;
        for _ in 0..16 {
            let Some(name) = rest.first().and_then(|w| w.literal()) else {
                break;
            };
            let name = basename(&name).to_string();
            if !wrappers::is_wrapper(&name) {
                break;
            }
            let mut scratch = Vec::new();
            match wrappers::inspect(&name, &rest[1..], None, &mut scratch) {
                Some(inner) => rest = &rest[1 + inner.start..],
                None => break,
            }
        }
        match rest.first() {
            Some(p) => {
                let prog = p.literal().map(|t| basename(&t).to_string());
                command_text(&prog.unwrap_or_else(|| p.canonical()), &rest[1..])
            }
            None => String::new(),
        }
    }

    fn redirected(&mut self, f: &Frame, node: Node, stdin: &Stdin, nest: usize) -> Check {
        let body = node.child_by_field_name("body");
        let mut inner = stdin.clone();
        let mut cursor = node.walk();
        let parts: Vec<Node> = node.named_children(&mut cursor).collect();
        for r in &parts {
            match r.kind() {
                // The shell opens redirections before it runs the command.
                "file_redirect" if Some(*r) != body => self.file_redirect(f, *r)?,
                _ => {}
            }
            match r.kind() {
                "heredoc_redirect" => inner = self.heredoc_stdin(f, *r),
                "herestring_redirect" => inner = self.herestring_stdin(f, *r)?,
                "file_redirect" if is_input(f, *r) => inner = Stdin::File,
                _ => {}
            }
        }
        if let Some(b) = body {
            self.walk(f, b, &inner, nest + 1)?;
        }
        for r in parts {
            if Some(r) != body {
                self.walk(f, r, stdin, nest + 1)?;
            }
        }
        Ok(())
    }

    fn heredoc_stdin(&self, f: &Frame, node: Node) -> Stdin {
        let mut c = node.walk();
        let kids: Vec<Node> = node.named_children(&mut c).collect();
        let quoted = kids
            .iter()
            .find(|k| k.kind() == "heredoc_start")
            .is_some_and(|k| text(f, *k).contains(['\'', '"', '\\']));
        let Some(body) = kids.iter().find(|k| k.kind() == "heredoc_body") else {
            return Stdin::Script(String::new(), f.map);
        };
        let mut bc = body.walk();
        let expands = body
            .named_children(&mut bc)
            .any(|k| k.kind() != "heredoc_content");
        let raw = text(f, *body);
        // Unquoted heredocs are expanded and unescaped before the reader sees them.
        if !quoted && (expands || raw.contains('\\')) {
            return Stdin::Dynamic;
        }
        let strip_tabs = fields(node)
            .iter()
            .any(|(_, n)| !n.is_named() && n.kind() == "<<-");
        if strip_tabs {
            let stripped: String = raw
                .split_inclusive('\n')
                .map(|l| l.trim_start_matches('\t'))
                .collect();
            Stdin::Script(stripped, SpanMap::Whole(f.map.to_top(span(*body))))
        } else {
            Stdin::Script(
                raw.to_string(),
                SpanMap::Offset(f.map.to_top(span(*body)).0),
            )
        }
    }

    fn herestring_stdin(&self, f: &Frame, node: Node) -> Result<Stdin, Box<Refusal>> {
        let mut c = node.walk();
        let Some(arg) = node
            .named_children(&mut c)
            .find(|k| k.kind() != "file_descriptor")
        else {
            return Ok(Stdin::Dynamic);
        };
        let w = self.word(f, arg)?;
        Ok(match w.literal() {
            Some(t) => {
                let map = self.map_for(f, &w, &t);
                Stdin::Script(t, map)
            }
            None => Stdin::Dynamic,
        })
    }

    /// The odd shape tree-sitter-bash gives `cat <<EOF | sh`: the rest of the pipeline, and any
    /// `&& next` after the heredoc, hang under the heredoc redirect.
    fn heredoc_redirect(&mut self, f: &Frame, node: Node, stdin: &Stdin, nest: usize) -> Check {
        for (field, k) in fields(node) {
            if !k.is_named() {
                continue;
            }
            match (field, k.kind()) {
                (_, "pipeline") => {
                    for s in flatten(k) {
                        self.walk(f, s, &Stdin::Pipe, nest + 1)?;
                    }
                }
                (Some("right"), _) => self.walk(f, k, stdin, nest + 1)?,
                _ => self.walk(f, k, &Stdin::Inherit, nest + 1)?,
            }
        }
        Ok(())
    }

    fn file_redirect(&self, f: &Frame, node: Node) -> Check {
        let Some(dest) = node.child_by_field_name("destination") else {
            return Ok(());
        };
        let w = self.word(f, dest)?;
        self.path_rules(f, RuleTarget::Redirect, &w, span(node), "")?;
        let op = fields(node)
            .into_iter()
            .find(|(_, n)| !n.is_named())
            .map(|(_, n)| n.kind())
            .unwrap_or("");
        // `>&2` and `2>&1` duplicate descriptors; `>& file` (a non-number) writes a file.
        let dup = matches!(op, ">&" | "<&" | ">&-" | "<&-") && dest.kind() == "number";
        if op.contains('>') && !dup {
            self.path_rules(f, RuleTarget::Write, &w, span(node), "")?;
        }
        Ok(())
    }

    fn word(&self, f: &Frame, node: Node) -> Result<Word, Box<Refusal>> {
        word::from_node(node, f.src).map_err(|kind| {
            self.refusal(
                f.map,
                span(node),
                "",
                "unsupported-syntax",
                &format!("the policy cannot read a `{kind}` inside a word"),
                "write the word more simply",
            )
        })
    }

    /// A command node's argv (name first) and its own stdin redirect, if any.
    fn argv(&self, f: &Frame, node: Node) -> Result<(Vec<Word>, Option<Stdin>), Box<Refusal>> {
        let mut argv = Vec::new();
        let mut own = None;
        for (field, k) in fields(node) {
            match (field, k.kind()) {
                (Some("name"), _) => {
                    let mut c = k.walk();
                    let inner = k.named_children(&mut c).next().unwrap_or(k);
                    let mut w = self.word(f, inner)?;
                    w.span = span(k);
                    argv.push(w);
                }
                (Some("argument"), _) => argv.push(self.word(f, k)?),
                (_, "herestring_redirect") => own = Some(self.herestring_stdin(f, k)?),
                (_, "file_redirect") if is_input(f, k) => own = Some(Stdin::File),
                _ => {}
            }
        }
        Ok((argv, own))
    }

    fn command(&mut self, f: &Frame, node: Node, stdin: &Stdin, nest: usize) -> Check {
        let (argv, own) = self.argv(f, node)?;
        let io = own.unwrap_or_else(|| stdin.clone());
        // The shell opens redirections before it runs the command.
        let mut c = node.walk();
        let redirects: Vec<Node> = node
            .named_children(&mut c)
            .filter(|k| k.kind() == "file_redirect")
            .collect();
        for r in redirects {
            self.file_redirect(f, r)?;
        }
        self.simple(f, &argv, &io, span(node), nest)?;
        // Substitutions inside the words, assignments and redirect targets.
        self.children(f, node, &Stdin::Inherit, nest)
    }
}

fn is_input(f: &Frame, redirect: Node) -> bool {
    let has_fd_other_than_0 = redirect
        .child_by_field_name("descriptor")
        .is_some_and(|d| text(f, d) != "0");
    let op = fields(redirect)
        .into_iter()
        .find(|(_, n)| !n.is_named())
        .map(|(_, n)| n.kind())
        .unwrap_or("");
    op == "<" && !has_fd_other_than_0
}
