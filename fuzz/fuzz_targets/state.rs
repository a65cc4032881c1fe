//! The state file parser on arbitrary bytes, as a file that was cut short,
//! damaged or edited by hand: every line it keeps renders back to a line
//! that parses to the same entry, and every line it drops is reported with
//! its number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nftsentry::journal::state::{parse, parse_line, render_entry};

fuzz_target!(|data: &[u8]| {
    let (entries, problems) = parse(data, "state");
    for p in &problems {
        assert!(p.starts_with("state:"), "{p}");
    }
    for e in entries.values() {
        let line = render_entry(e);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line:?}"
        );
        assert_eq!(
            parse_line(line.trim_end_matches('\n')).as_ref(),
            Ok(e),
            "{line}"
        );
    }
});
