//! Parsing with tree-sitter-bash under a deadline, reusing one parser per thread.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::time::Instant;

use tree_sitter::{ParseOptions, Parser, Tree};

pub(crate) enum ParseFailure {
    /// The deadline passed while parsing.
    TimedOut,
    /// The grammar could not be loaded (a build problem, not an input problem).
    Unavailable,
}

thread_local! {
    // Creating a parser allocates its tables; one per thread keeps a check allocation-light.
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

fn new_parser() -> Option<Parser> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bash::LANGUAGE.into())
        .ok()?;
    Some(parser)
}

pub(crate) fn parse(src: &str, deadline: Instant) -> Result<Tree, ParseFailure> {
    PARSER.with(|cell| {
        // A re-entrant call (never expected) gets its own parser rather than a borrow panic.
        let Ok(mut slot) = cell.try_borrow_mut() else {
            let mut parser = new_parser().ok_or(ParseFailure::Unavailable)?;
            return run(&mut parser, src, deadline);
        };
        if slot.is_none() {
            *slot = new_parser();
        }
        let parser = slot.as_mut().ok_or(ParseFailure::Unavailable)?;
        run(parser, src, deadline)
    })
}

fn run(parser: &mut Parser, src: &str, deadline: Instant) -> Result<Tree, ParseFailure> {
    // A cancelled parse leaves state behind that the next parse would resume from.
    parser.reset();
    let bytes = src.as_bytes();
    let mut timed_out = false;
    let mut progress = |_: &tree_sitter::ParseState| {
        if Instant::now() > deadline {
            timed_out = true;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let options = ParseOptions::new().progress_callback(&mut progress);
    let tree = parser.parse_with_options(
        &mut |i, _| bytes.get(i..).unwrap_or_default(),
        None,
        Some(options),
    );
    match tree {
        Some(tree) => Ok(tree),
        None if timed_out => {
            parser.reset();
            Err(ParseFailure::TimedOut)
        }
        None => Err(ParseFailure::Unavailable),
    }
}
