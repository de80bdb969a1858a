//! DNS answers come from the network: whatever a nameserver (or a spoofer) sends, decoding
//! must end in addresses, an error code or "not ours" — never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_dns::{decode_answer, Name, RecordType};

fuzz_target!(|data: &[u8]| {
    let name = Name::from_ascii("db.example.").expect("a valid name");
    let id = data.first().map_or(0, |b| u16::from(*b));
    for kind in [RecordType::A, RecordType::AAAA] {
        let _ = decode_answer(data, id, &name, kind);
    }
});
