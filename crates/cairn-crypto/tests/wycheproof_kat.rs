//! Known-answer tests from Project Wycheproof for every primitive Cairn relies on. Each
//! test prints how many vectors it ran; every applicable vector must pass.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use wycheproof::TestResult;

#[test]
fn aes_256_gcm_vectors() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let mut ran = 0;
    for group in set.test_groups {
        // Cairn uses AES-256 with 96-bit nonces and 128-bit tags only.
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for t in group.tests {
            ran += 1;
            let cipher = Aes256Gcm::new_from_slice(&t.key).unwrap();
            let nonce: [u8; 12] = t.nonce.as_ref().try_into().unwrap();
            let mut ct_tag = t.ct.to_vec();
            ct_tag.extend_from_slice(&t.tag);
            let opened = cipher.decrypt(&nonce.into(), Payload { msg: &ct_tag, aad: &t.aad });
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    let sealed =
                        cipher.encrypt(&nonce.into(), Payload { msg: &t.pt, aad: &t.aad }).unwrap();
                    assert_eq!(sealed, ct_tag, "tc {} encrypt", t.tc_id);
                    assert_eq!(opened.unwrap(), t.pt.to_vec(), "tc {} decrypt", t.tc_id);
                }
                TestResult::Invalid => assert!(opened.is_err(), "tc {} must fail", t.tc_id),
            }
        }
    }
    println!("wycheproof AES-256-GCM: {ran} vectors passed");
    assert!(ran > 50, "expected the AES-256-GCM vectors, ran {ran}");
}

#[test]
fn x25519_vectors_and_zero_shared_secret_rejection() {
    use x25519_dalek::{PublicKey, StaticSecret};
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519).unwrap();
    let (mut ran, mut zero) = (0, 0);
    for group in set.test_groups {
        for t in group.tests {
            let (Ok(public), Ok(private)) = (
                <[u8; 32]>::try_from(t.public_key.as_ref()),
                <[u8; 32]>::try_from(t.private_key.as_ref()),
            ) else {
                // A key of the wrong length cannot even be constructed: rejected by type.
                assert_eq!(t.result, TestResult::Invalid, "tc {}", t.tc_id);
                ran += 1;
                continue;
            };
            ran += 1;
            let shared = StaticSecret::from(private).diffie_hellman(&PublicKey::from(public));
            if shared.as_bytes().iter().all(|b| *b == 0) {
                zero += 1;
                assert!(!shared.was_contributory(), "tc {}", t.tc_id);
                // Our envelope wrapping refuses such a recipient key (HPKE's DHKEM check).
                let me = cairn_crypto::DeviceIdentity::generate();
                let wrapped = cairn_crypto::wrap_epoch_key(
                    &me,
                    cairn_proto::SpaceId([1; 16]),
                    0,
                    &me.id(),
                    &cairn_proto::AgreeKey(public),
                    &cairn_crypto::EpochKey::generate(),
                );
                assert!(wrapped.is_err(), "tc {}: low-order key accepted", t.tc_id);
                continue;
            }
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(shared.as_bytes(), t.shared_secret.as_ref(), "tc {}", t.tc_id)
                }
                TestResult::Invalid => {
                    assert_ne!(shared.as_bytes(), t.shared_secret.as_ref(), "tc {}", t.tc_id)
                }
            }
        }
    }
    println!("wycheproof X25519: {ran} vectors passed, {zero} all-zero shared secrets rejected");
    assert!(ran > 100 && zero > 0);
}

#[test]
fn ed25519_strict_verification_vectors() {
    use ed25519_dalek::{Signature, VerifyingKey};
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut ran = 0;
    for group in set.test_groups {
        let key = VerifyingKey::from_bytes(group.key.pk.as_ref().try_into().unwrap()).unwrap();
        for t in group.tests {
            ran += 1;
            let ok = <[u8; 64]>::try_from(t.sig.as_ref())
                .map(|s| key.verify_strict(&t.msg, &Signature::from_bytes(&s)).is_ok())
                .unwrap_or(false);
            match t.result {
                TestResult::Valid => assert!(ok, "tc {} must verify", t.tc_id),
                TestResult::Invalid => assert!(!ok, "tc {} must be rejected", t.tc_id),
                TestResult::Acceptable => {}
            }
        }
    }
    println!("wycheproof Ed25519 (strict): {ran} vectors passed");
    assert!(ran > 100);
}

#[test]
fn hkdf_sha256_vectors() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut ran = 0;
    for group in set.test_groups {
        for t in group.tests {
            ran += 1;
            let salt = if t.salt.is_empty() { None } else { Some(t.salt.as_ref()) };
            let hk = hkdf::Hkdf::<sha2::Sha256>::new(salt, &t.ikm);
            let mut okm = vec![0u8; t.size];
            let res = hk.expand(&t.info, &mut okm);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    res.unwrap();
                    assert_eq!(okm, t.okm.to_vec(), "tc {}", t.tc_id);
                }
                TestResult::Invalid => assert!(res.is_err(), "tc {} must fail", t.tc_id),
            }
        }
    }
    println!("wycheproof HKDF-SHA256: {ran} vectors passed");
    assert!(ran > 50);
}
