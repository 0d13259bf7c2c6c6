//! Fuzzes the PDF extractor: no panic, no hang, and every result well formed, under a budget
//! small enough to be hit and one that is not.
//!
//! pdf-extract panics on some malformed files; the extractor contains those panics with
//! `catch_unwind` (and the data plane parses in a child process besides), so a panic raised
//! inside a dependency is let through to that `catch_unwind` here. A panic anywhere else still
//! aborts, as libfuzzer-sys makes every panic do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragplane_parse::{extract, testdata, Budget, Format, ParseError};

fn contain_dependency_panics() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_dependency = info
            .location()
            .is_some_and(|l| l.file().contains("/registry/src/"));
        if !in_dependency {
            abort(info);
        }
    }));
}

fuzz_target!(init: contain_dependency_panics(), |data: &[u8]| {
    for max_text_bytes in [64, 1 << 16] {
        let budget = Budget { max_text_bytes };
        match extract(Format::Pdf, data, budget) {
            Ok(e) => testdata::assert_well_formed(&e, budget),
            Err(ParseError::TooLarge { limit }) => assert_eq!(limit, max_text_bytes),
            Err(_) => {}
        }
    }
});
