//! Downloaded media: the streaming decryptor must reject garbage in any slicing.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = cairn_crypto::MediaKey::generate();
    let mut out = Vec::new();
    let mut dec = cairn_crypto::MediaDecryptor::new(&key);
    let split = data.first().copied().unwrap_or(1).max(1) as usize;
    for part in data.chunks(split) {
        if dec.push(part, &mut out).is_err() {
            return;
        }
    }
    let _ = dec.finish(&mut out);
});
