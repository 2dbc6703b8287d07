//! Every frame the server reads, and every frame a client reads.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_proto::decode::<cairn_proto::ClientFrame>(data);
    let _ = cairn_proto::decode::<cairn_proto::ServerFrame>(data);
});
