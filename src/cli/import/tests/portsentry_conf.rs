//! Tests of the portsentry.conf reader: ConfigTokenRetrieve's rules and
//! atoi().

use super::*;

#[test]
fn values_are_read_between_double_quotes() {
    assert_eq!(value("SCAN_TRIGGER=\"2\"\n", "SCAN_TRIGGER").unwrap(), "2");
    // Debian's own file writes RESOLVE_HOST = "0": a space after the key.
    assert_eq!(
        value("RESOLVE_HOST = \"1\"\n", "RESOLVE_HOST").unwrap(),
        "1"
    );
    assert_eq!(value("KILL_ROUTE=\"\"\n", "KILL_ROUTE").unwrap(), "");
    // Text after the closing quote is not part of the value.
    assert_eq!(
        value("SCAN_TRIGGER=\"2\" # two\n", "SCAN_TRIGGER").unwrap(),
        "2"
    );
    // No closing quote: the value runs to the end of the line.
    assert_eq!(value("SCAN_TRIGGER=\"2\n", "SCAN_TRIGGER").unwrap(), "2");
    assert_eq!(conf("").token("SCAN_TRIGGER"), Token::Absent);
}

#[test]
fn first_occurrence_wins() {
    let c = conf("SCAN_TRIGGER=\"1\"\nSCAN_TRIGGER=\"3\"\n");
    assert_eq!(
        c.token("SCAN_TRIGGER"),
        Token::Value {
            value: "1".into(),
            line: 1,
            dropped: None
        }
    );
    let d = c.diagnostics();
    assert_eq!(
        d,
        [
            "/etc/portsentry/portsentry.conf:2: SCAN_TRIGGER again: PortSentry uses only the first one, line 1"
        ]
    );
}

#[test]
fn an_unquoted_first_occurrence_hides_later_ones() {
    // PortSentry returns at the first line with the key: "Quotes missing
    // from SCAN_TRIGGER token. Option skipped", and never sees line 2.
    let c = conf("SCAN_TRIGGER=2\nSCAN_TRIGGER=\"3\"\n");
    assert_eq!(c.token("SCAN_TRIGGER"), Token::Unquoted { line: 1 });
    let out = convert(&c, None, None, None, &[]);
    assert!(
        out.warnings.iter().any(|w| w
            == "/etc/portsentry/portsentry.conf:1: SCAN_TRIGGER has no quotes: PortSentry skipped it (\"Quotes missing\")"),
        "{:#?}",
        out.warnings
    );
    // Skipped means PortSentry's "disabled" trigger: 0.
    assert!(out.toml.contains("\nscan_trigger = 0\n"), "{}", out.toml);
}

#[test]
fn comments_and_key_boundaries() {
    // Only a `#` in the first column makes a comment.
    assert_eq!(value("#SCAN_TRIGGER=\"5\"\n", "SCAN_TRIGGER"), None);
    // The byte at offset len(key) must be `=` or a space.
    assert_eq!(value("SCAN_TRIGGER\t=\"5\"\n", "SCAN_TRIGGER"), None);
    assert_eq!(value("KILL_RUN_CMD_FIRST=\"1\"\n", "KILL_RUN_CMD"), None);
    // Keys are case-sensitive.
    assert_eq!(value("scan_trigger=\"5\"\n", "SCAN_TRIGGER"), None);
    // strstr() finds the key anywhere in the line, and the offset test is
    // made at the start of the line: a TCP_PORTS line whose comment names
    // UDP_PORTS is read as UDP_PORTS too, as PortSentry did.
    let c = conf("TCP_PORTS=\"1,2\" # not UDP_PORTS\n");
    assert_eq!(c.token("UDP_PORTS").value(), Some("1,2"));
    assert_eq!(c.token("TCP_PORTS").value(), Some("1,2"));
}

#[test]
fn unprintable_bytes_end_the_value() {
    let c = conf("PORT_BANNER=\"go\taway\"\n");
    assert_eq!(
        c.token("PORT_BANNER"),
        Token::Value {
            value: "go".into(),
            line: 1,
            dropped: Some("\taway".into())
        }
    );
    // isprint() in the C locale: a UTF-8 dash ends the value.
    let c = conf("PORT_BANNER=\"Zugriff \u{2013} verboten\"\n");
    assert_eq!(c.token("PORT_BANNER").value(), Some("Zugriff "));
    let out = convert(&c, None, None, None, &[]);
    assert!(
        out.warnings
            .iter()
            .any(|w| w.contains("PORT_BANNER") && w.contains("it read \"Zugriff \"")),
        "{:#?}",
        out.warnings
    );
}

#[test]
fn crlf_line_endings() {
    let text = "SCAN_TRIGGER=\"2\"\r\nBLOCK_TCP=\"1\"\r\nPORT_BANNER=\"no\r\n";
    let c = conf(text);
    assert_eq!(c.token("SCAN_TRIGGER").value(), Some("2"));
    assert_eq!(c.token("BLOCK_TCP").value(), Some("1"));
    assert_eq!(
        c.token("PORT_BANNER"),
        Token::Value {
            value: "no".into(),
            line: 3,
            dropped: None
        }
    );
    assert_eq!(c.diagnostics(), Vec::<String>::new());
}

#[test]
fn long_lines_are_read_in_fgets_chunks() {
    // fgets(buffer, 1024, ...) returns a long line in pieces of 1023
    // bytes; the piece after the first is not a comment even when the line
    // is, so a key at its start counts.
    let text = format!("#{}TCP_PORTS=\"7\"\nSCAN_TRIGGER=\"1\"\n", "x".repeat(1022));
    let c = conf(&text);
    assert_eq!(
        c.token("TCP_PORTS"),
        Token::Value {
            value: "7".into(),
            line: 1,
            dropped: None
        }
    );
    assert_eq!(c.token("SCAN_TRIGGER").line(), Some(2));
    // One byte less and the key is inside the comment's first piece.
    let text = format!("#{}TCP_PORTS=\"7\"\n", "x".repeat(1021));
    assert_eq!(conf(&text).token("TCP_PORTS"), Token::Absent);
}

#[test]
fn garbage_lines_are_reported_not_fatal() {
    let text = "this is not a setting\nscan_trigger=\"1\"\n\n   \n# comment\n\u{0}\u{1}\u{2}\nSCAN_TRIGGER=\"1\"\n";
    let c = conf(text);
    assert_eq!(c.token("SCAN_TRIGGER").line(), Some(7));
    let d = c.diagnostics();
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(
        d[0],
        "/etc/portsentry/portsentry.conf:1: PortSentry reads no setting from `this is not a setting`; ignored"
    );
    assert!(
        d[1].ends_with("(keys are upper case: SCAN_TRIGGER)"),
        "{d:#?}"
    );
    // Any bytes at all are read without an error.
    let c = PortsentryConf::parse(&[0xff, 0xfe, b'\n', 0, b'"', b'\n'], "bin");
    assert_eq!(c.token("TCP_PORTS"), Token::Absent);
}

#[test]
fn atoi_as_c() {
    assert_eq!(atoi("12"), (12, true));
    assert_eq!(atoi("  12 "), (12, true));
    assert_eq!(atoi("+7"), (7, true));
    assert_eq!(atoi("-3"), (-3, true));
    assert_eq!(atoi("80-90"), (80, false));
    assert_eq!(atoi("1x"), (1, false));
    assert_eq!(atoi("abc"), (0, false));
    assert_eq!(atoi(""), (0, false));
    assert_eq!(atoi("99999999999999999999"), (i64::from(i32::MAX), true));
}
