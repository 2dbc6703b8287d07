//! Membership ops come from the server: decode, verify and replay must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 64 {
        return;
    }
    let (sig, body) = data.split_at(64);
    let op = cairn_proto::SignedOp { body: body.to_vec(), signature: cairn_proto::Signature(sig.try_into().unwrap()) };
    let _ = cairn_crypto::MembershipLog::replay(&[op.clone(), op]);
    let _ = cairn_proto::decode::<cairn_proto::MembershipOp>(body);
});
