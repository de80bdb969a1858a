//! What `mode http` reads from clients and servers: request and response heads, their body
//! framing, the hop-by-hop filter and the chunked-body scanner. Never a panic; every range a
//! head gives lies within it, in order; copying every line rebuilds the head exactly; the
//! chunk scanner finds the same end whether the body arrives at once or byte by byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_h1::{
    copy_head, parse_request, parse_response, request_framing, response_framing, target_path,
    target_query, ChunkScanner, Head,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(head)) = parse_request(data) {
        check_head(data, &head);
        let _ = request_framing(&head);
        let target = &data[head.target.range()];
        assert!(target_path(target).len() <= target.len());
        if let Some(query) = target_query(target) {
            assert!(query.len() < target.len());
        }
    }
    if let Ok(Some(head)) = parse_response(data) {
        check_head(data, &head);
        let _ = response_framing(&head, false);
        let _ = response_framing(&head, true);
    }
    check_chunks(data);
});

fn check_head(data: &[u8], head: &Head) {
    assert!(head.len <= data.len());
    let start = head.start_line.range().start;
    let mut at = head.start_line.range().end;
    for field in &head.fields {
        let (line, name, value) = (field.line.range(), field.name.range(), field.value.range());
        assert_eq!(line.start, at, "header lines are contiguous");
        assert!(name.start == line.start && name.end <= value.start);
        assert!(value.end <= line.end);
        at = line.end;
    }
    assert!(at <= head.len);
    for name in &head.semantics.named {
        assert!(name.range().end <= head.len);
    }

    let mut all = Vec::new();
    copy_head(&mut all, data, head, |_| true);
    let all_lines = all.len();
    let lines = &data[start..at];
    if head.bare_lf {
        // Every line comes out ending in CRLF, and only the line ends change.
        assert!(all.ends_with(b"\r\n") || all.is_empty());
        assert_eq!(strip_cr_before_lf(&all), strip_cr_before_lf(lines));
    } else {
        all.extend_from_slice(&data[at..head.len]);
        assert_eq!(
            all,
            &data[start..head.len],
            "copying every line rebuilds the head (less empty lines before it)"
        );
    }
    assert!(data[..start]
        .iter()
        .all(|&b| b == b'\r' || b == b'\n'));

    let mut kept = Vec::new();
    copy_head(&mut kept, data, head, |field| {
        !head.hop_by_hop(data, field, false)
    });
    assert!(kept.len() <= all_lines, "a filter only removes lines");
    assert!(kept.starts_with(head.start_line_text(data)));
}

fn strip_cr_before_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

fn check_chunks(data: &[u8]) {
    let mut whole = ChunkScanner::default();
    let at_once = whole.scan(data);
    let mut decoding = ChunkScanner::default();
    let mut decoded = Vec::new();
    let decoded_at_once = decoding.scan_into(data, &mut decoded);
    assert_eq!(at_once, decoded_at_once, "decoding frames the body alike");
    assert!(decoded.len() <= data.len());
    let mut bytewise = ChunkScanner::default();
    let mut taken = 0;
    let mut failed = false;
    for byte in data {
        match bytewise.scan(std::slice::from_ref(byte)) {
            Ok(n) => taken += n,
            Err(_) => {
                failed = true;
                break;
            }
        }
        if bytewise.done() {
            break;
        }
    }
    match at_once {
        Ok(n) => {
            assert!(!failed, "bytewise failed where the whole body scanned");
            assert_eq!(n, taken, "same end at once and byte by byte");
            assert_eq!(whole.done(), bytewise.done());
        }
        Err(_) => assert!(failed, "bytewise scanned what failed at once"),
    }
}
