//! GNU/POSIX option scanning over shell words, shared by the wrapper and program inspectors.

use super::word::Word;

/// Which options of a program take a value.
pub(crate) struct OptSpec {
    /// Short options whose value is the rest of the cluster or, failing that, the next word.
    pub short_arg: &'static str,
    /// Short options whose value can only be attached (`-i{}`), as xargs' `-i`.
    pub short_attached: &'static str,
    /// Long options (without `--`) whose value may be the next word.
    pub long_arg: &'static [&'static str],
    /// Stop at the first operand (wrappers); otherwise keep scanning options after operands.
    pub stop_at_operand: bool,
}

pub(crate) struct Opt {
    /// `-n` or `--adjustment`.
    pub name: String,
    pub value: Option<Word>,
    /// The word the option came from.
    pub at: (usize, usize),
}

pub(crate) struct Scan {
    pub opts: Vec<Opt>,
    /// Indices of operands (non-option words) in order.
    pub operands: Vec<usize>,
}

impl Scan {
    pub fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|o| names.contains(&o.name.as_str()))
    }

    pub fn values<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = &'a Word> + 'a {
        self.opts
            .iter()
            .filter(move |o| names.contains(&o.name.as_str()))
            .filter_map(|o| o.value.as_ref())
    }

    pub fn first_operand(&self) -> Option<usize> {
        self.operands.first().copied()
    }
}

pub(crate) fn scan(args: &[Word], spec: &OptSpec) -> Scan {
    let mut opts = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        // An option the shell computes at run time cannot be read; treat it as an operand so
        // that a wrapper hands it on as the command (refused there as dynamic).
        let Some(text) = word.literal() else {
            operands.push(i);
            if spec.stop_at_operand {
                break;
            }
            i += 1;
            continue;
        };
        if text == "--" {
            operands.extend(i + 1..args.len());
            break;
        }
        if text.len() < 2 || !text.starts_with('-') {
            operands.push(i);
            if spec.stop_at_operand {
                operands.extend(i + 1..args.len());
                break;
            }
            i += 1;
            continue;
        }
        if let Some(long) = text.strip_prefix("--") {
            if let Some((name, _)) = long.split_once('=') {
                let value = word.strip_literal_prefix(&format!("--{name}="));
                opts.push(Opt {
                    name: format!("--{name}"),
                    value,
                    at: word.span,
                });
            } else if spec.long_arg.contains(&long) {
                opts.push(Opt {
                    name: text.clone(),
                    value: args.get(i + 1).cloned(),
                    at: word.span,
                });
                i += 1;
            } else {
                opts.push(Opt {
                    name: text.clone(),
                    value: None,
                    at: word.span,
                });
            }
            i += 1;
            continue;
        }
        let cluster: Vec<(usize, char)> = text.char_indices().skip(1).collect();
        for (pos, c) in cluster {
            let rest_at = pos + c.len_utf8();
            let attached = rest_at < text.len();
            if spec.short_arg.contains(c) || spec.short_attached.contains(c) {
                let value = if attached {
                    word.strip_literal_prefix(&text[..rest_at])
                } else if spec.short_arg.contains(c) {
                    i += 1;
                    args.get(i).cloned()
                } else {
                    None
                };
                opts.push(Opt {
                    name: format!("-{c}"),
                    value,
                    at: word.span,
                });
                break;
            }
            opts.push(Opt {
                name: format!("-{c}"),
                value: None,
                at: word.span,
            });
        }
        i += 1;
    }
    Scan { opts, operands }
}
