//! The stats socket's input path must never panic, whatever a client sends: arbitrary bytes
//! are framed into commands like the server does (LF or unescaped `;`, 16 KiB per command),
//! each command is tokenized and parsed, and every outcome is a command or an error message.
//! The framing must also be lossless and agree with `split_commands` on single lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_api::command::{help_message, parse, split_commands, tokenize, Command};
use switchyard_api::server::{next_command, Frame, MAX_COMMAND};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match next_command(rest) {
            Frame::Command { text, consumed } => {
                assert!(consumed > 0 && consumed <= rest.len() && consumed <= MAX_COMMAND);
                assert!(matches!(rest[consumed - 1], b'\n' | b';'));
                assert_eq!(text, &rest[..text.len()]);
                assert!(consumed - 1 - text.len() <= 1, "at most one CR is dropped");
                check_command(&String::from_utf8_lossy(text));
                rest = &rest[consumed..];
            }
            Frame::Incomplete => {
                assert!(rest.len() < MAX_COMMAND);
                break;
            }
            Frame::TooLong => {
                assert!(rest.len() >= MAX_COMMAND);
                break;
            }
        }
    }

    // A single line (no LF at all) framed with its LF splits like `split_commands`.
    let line = String::from_utf8_lossy(data);
    if !line.contains('\n') && !line.ends_with('\\') && line.len() < MAX_COMMAND {
        let mut request = line.clone().into_owned().into_bytes();
        request.push(b'\n');
        let mut framed = Vec::new();
        let mut rest = &request[..];
        while let Frame::Command { text, consumed } = next_command(rest) {
            framed.push(String::from_utf8_lossy(text).into_owned());
            rest = &rest[consumed..];
        }
        assert_eq!(framed, split_commands(&line));
    }
});

fn check_command(text: &str) {
    // Words never contain the separators or a NUL (they end a word, as in HAProxy's C code).
    for word in tokenize(text) {
        assert!(!word.contains('\0'));
    }
    match parse(text) {
        Ok(command) => {
            let _ = command.level();
            if let Command::Help(words) = &command {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                assert!(!help_message(&words).is_empty());
            }
        }
        Err(error) => {
            assert!(!error.message.trim().is_empty(), "blank error for {text:?}");
            let _ = error.to_string();
        }
    }
}
