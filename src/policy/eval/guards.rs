//! Places where tree-sitter-bash reads shell differently from bash, or where a construct is
//! dangerous as a whole (fork bombs), and the function scoping that calls depend on.

use super::*;

impl Eval<'_> {
    /// tree-sitter-bash splits `r\<newline>m` into two words where bash joins them into `rm`;
    /// refuse that shape instead of reading it differently from the shell.
    pub(super) fn check_continuations(&self, f: &Frame, root: Node) -> Check {
        let b = f.src.as_bytes();
        for i in 1..b.len() {
            if b[i] != b'\n' || b[i - 1] != b'\\' {
                continue;
            }
            let run = b[..i].iter().rev().take_while(|&&c| c == b'\\').count();
            if run % 2 == 0 {
                continue;
            }
            let before = (i - run).checked_sub(1).and_then(|j| b.get(j)).copied();
            let after = b.get(i + 1).copied();
            let glued = |c: Option<u8>| c.is_some_and(|c| !c.is_ascii_whitespace() && c != b';');
            if !glued(before) || !glued(after) {
                continue;
            }
            let inside_quotes = root
                .descendant_for_byte_range(i - 1, i)
                .map(|mut n| {
                    loop {
                        if matches!(
                            n.kind(),
                            "raw_string" | "string" | "ansi_c_string" | "heredoc_body" | "comment"
                        ) {
                            break true;
                        }
                        match n.parent() {
                            Some(p) => n = p,
                            None => break false,
                        }
                    }
                })
                .unwrap_or(false);
            if !inside_quotes {
                return self.refuse(
                    f,
                    (i - 1, i + 1),
                    "",
                    "parse-error",
                    "a backslash-newline joins two parts of a word, which the policy cannot read the way the shell does",
                    "write the word on one line",
                );
            }
        }
        Ok(())
    }

    /// Functions this script surely defines before running anything else: top-level
    /// definitions only (one inside a subshell, a condition or `&&` may never exist when the
    /// name is called), minus any name the script unsets. A call counts as a function call only
    /// after its definition.
    pub(super) fn collect_functions(&mut self, f: &Frame, root: Node) -> Check {
        let mut c = root.walk();
        for n in root.named_children(&mut c) {
            self.tick(f, n, 0)?;
            if n.kind() == "function_definition"
                && let Some(name) = n.child_by_field_name("name")
            {
                self.functions
                    .push((text(f, name).to_string(), n.end_byte()));
            }
        }
        if self.functions.is_empty() {
            return Ok(());
        }
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            self.tick(f, n, 0)?;
            let unsets = n.kind() == "unset_command"
                || (n.kind() == "command"
                    && n.child_by_field_name("name")
                        .is_some_and(|c| text(f, c) == "unset"));
            if unsets {
                let gone = text(f, n);
                self.functions
                    .retain(|(name, _)| !gone.split_whitespace().any(|w| w == name));
            }
            let mut c = n.walk();
            stack.extend(n.named_children(&mut c));
        }
        Ok(())
    }

    pub(super) fn is_function(&self, name: &str, at: usize) -> bool {
        self.functions
            .iter()
            .any(|(n, end)| n == name && *end <= at)
    }

    pub(super) fn fork_bomb(&mut self, f: &Frame, node: Node) -> Check {
        let (Some(name), Some(body)) = (
            node.child_by_field_name("name"),
            node.child_by_field_name("body"),
        ) else {
            return Ok(());
        };
        let name = text(f, name);
        let mut calls = 0;
        let mut spawns = false;
        let mut stack = vec![body];
        while let Some(n) = stack.pop() {
            self.tick(f, n, 0)?;
            if n.kind() == "command" {
                let called = n
                    .child_by_field_name("name")
                    .is_some_and(|c| text(f, c) == name);
                if called {
                    calls += 1;
                    spawns |= self.backgrounded_or_piped(n, body);
                }
            }
            let mut c = n.walk();
            stack.extend(n.named_children(&mut c));
        }
        if calls >= 2 || spawns {
            return self.refuse(
                f,
                span(node),
                name,
                "fork-bomb",
                "the function starts copies of itself without bound",
                "call the function in a bounded loop rather than recursively",
            );
        }
        Ok(())
    }

    pub(super) fn backgrounded_or_piped(&self, call: Node, body: Node) -> bool {
        let mut n = call;
        while n != body {
            if n.kind() == "pipeline" || n.next_sibling().is_some_and(|s| s.kind() == "&") {
                return true;
            }
            match n.parent() {
                Some(p) => n = p,
                None => break,
            }
        }
        false
    }

    pub(super) fn unquoted_body_has_backquote(&self, f: &Frame, body: Node) -> bool {
        let quoted = body.parent().is_some_and(|p| {
            let mut c = p.walk();
            p.named_children(&mut c)
                .find(|k| k.kind() == "heredoc_start")
                .is_some_and(|k| text(f, k).contains(['\'', '"', '\\']))
        });
        if quoted {
            return false;
        }
        let mut pos = body.start_byte();
        let mut c = body.walk();
        let kids: Vec<Node> = body.named_children(&mut c).collect();
        for k in kids {
            if has_backquote(f.src.get(pos..k.start_byte()).unwrap_or("")) {
                return true;
            }
            pos = k.end_byte().max(pos);
        }
        has_backquote(f.src.get(pos..body.end_byte()).unwrap_or(""))
    }

    /// Inside backquotes the shell first removes the backslash from `\``, `\\` and `\$`, then
    /// parses the result; tree-sitter skips that step, so nested backquotes are re-read here.
    pub(super) fn backquoted(&mut self, f: &Frame, node: Node) -> Check {
        let raw = text(f, node);
        let inner = raw
            .strip_prefix('`')
            .and_then(|s| s.strip_suffix('`'))
            .unwrap_or("");
        let mut script = String::with_capacity(inner.len());
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\'
                && let Some(&n @ ('`' | '\\' | '$')) = chars.peek()
            {
                script.push(n);
                chars.next();
                continue;
            }
            script.push(c);
        }
        let map = if script == inner {
            SpanMap::Offset(f.map.to_top(span(node)).0 + 1)
        } else {
            SpanMap::Whole(f.map.to_top(span(node)))
        };
        self.check_script(&script, map, f.depth + 1)
    }
}

/// An unescaped backquote in text tree-sitter left as plain text.
pub(super) fn has_backquote(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'`' && b[..i].iter().rev().take_while(|&&x| x == b'\\').count() % 2 == 0
    })
}
