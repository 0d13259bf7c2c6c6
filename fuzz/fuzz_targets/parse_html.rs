//! Fuzzes the HTML extractor: no panic, no hang, and every result well formed, under a budget
//! small enough to be hit and one that is not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragplane_parse::{extract, testdata, Budget, Format, ParseError};

fuzz_target!(|data: &[u8]| {
    for max_text_bytes in [64, 1 << 16] {
        let budget = Budget { max_text_bytes };
        match extract(Format::Html, data, budget) {
            Ok(e) => testdata::assert_well_formed(&e, budget),
            Err(ParseError::TooLarge { limit }) => assert_eq!(limit, max_text_bytes),
            Err(_) => {}
        }
    }
});
