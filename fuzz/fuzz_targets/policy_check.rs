//! Parse + evaluate on arbitrary input: must not panic, must stay within its time budget, and a
//! refusal's span must point into the checked text.
#![no_main]

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;

// The policy module is compiled on its own (it depends only on tree-sitter, regex and serde),
// so fuzzing needs neither the whole worker nor its lib.rs wiring.
#[path = "../../src/policy/mod.rs"]
#[allow(dead_code, unused_imports)]
mod policy;

use policy::{Decision, Policy};

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default_policy);

/// Generous next to the policy's own 250 ms budget: sanitizer builds are several times slower.
const LIMIT: Duration = Duration::from_secs(2);

fn check(d: &Decision, text_len: usize) {
    if let Decision::Refused(r) = d {
        assert!(
            r.span.0 <= r.span.1 && r.span.1 <= text_len,
            "span {:?} out of {text_len}",
            r.span
        );
        assert!(r.command.is_char_boundary(r.span.0) && r.command.is_char_boundary(r.span.1));
        assert!(!r.message().is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let t0 = Instant::now();
    let d = POLICY.check_command(text);
    assert!(
        t0.elapsed() < LIMIT,
        "check_command took {:?}",
        t0.elapsed()
    );
    check(&d, text.len());

    // The same bytes as an argv job, NUL-separated.
    let argv: Vec<String> = text.split('\0').map(str::to_string).collect();
    let t0 = Instant::now();
    let d = POLICY.check_argv(&argv);
    assert!(t0.elapsed() < LIMIT, "check_argv took {:?}", t0.elapsed());
    if let Decision::Refused(r) = &d {
        check(&d, r.command.len());
    }
});
