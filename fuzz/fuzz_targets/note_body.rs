//! Note bodies arrive encrypted, but a malicious member can seal anything: decoding and
//! opening must only ever return errors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_proto::decode::<cairn_crypto::NoteBody>(data);
    let _ = cairn_proto::decode::<cairn_proto::SealedNote>(data);
});
