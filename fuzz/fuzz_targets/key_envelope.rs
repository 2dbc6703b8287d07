//! Key envelopes come from the server: decoding and unwrapping must only ever fail cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static ME: OnceLock<cairn_crypto::DeviceIdentity> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let me = ME.get_or_init(cairn_crypto::DeviceIdentity::generate);
    if let Ok(mut env) = cairn_proto::decode::<cairn_proto::KeyEnvelope>(data) {
        env.recipient = me.id();
        let _ = cairn_crypto::unwrap_epoch_key(me, &env);
    }
});
