//! TLS in the server (`--tls-cert`, `--tls-key`), with certificates this test makes: the
//! client and cairn-cli connect over `wss://` (and upload over `https://`) once the test's
//! CA is trusted, refuse an unknown CA and a certificate for another name, and a SIGHUP
//! makes the server take new files without dropping the connections it has.
//!
//! One test, in order: which CAs a process trusts is process-wide, and only grows.

use cairn_client::{Client, Content, Draft};
use cairn_proto::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { issuer: Issuer::new(params, key), pem }
}

/// A certificate for `names` signed by `ca`, written as `stem.crt` and `stem.key` in `dir`.
fn server_cert(ca: &Ca, names: &[&str], dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca.issuer).unwrap();
    let (crt, k) = (dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (crt, k)
}

async fn tls_server(data: &Path, cert: &Path, key: &Path) -> cairn_server::RunningServer {
    let mut config = cairn_server::Config::for_data_dir(data);
    config.tls_cert = Some(cert.to_owned());
    config.tls_key = Some(key.to_owned());
    cairn_server::start(config).await.unwrap()
}

fn png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(32, 32, image::Rgb([200, 30, 30]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_trusted_ca_refuses_the_wrong_certificate_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (ca1, ca2) = (ca("Cairn test CA 1"), ca("Cairn test CA 2"));
    std::fs::write(dir.path().join("ca1.pem"), &ca1.pem).unwrap();
    let (cert, key) = server_cert(&ca1, &["localhost", "127.0.0.1"], dir.path(), "live");
    let server = tls_server(&dir.path().join("server"), &cert, &key).await;
    let url = server.ws_url();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let homes = dir.path().join("homes");

    // Not trusted yet: refused, and the error says why.
    let Err(e) =
        Client::init(&homes.join("early"), &url, &Handle::from_static("early"), None, None).await
    else {
        panic!("connected without trusting the CA")
    };
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // cairn-cli with the CA (CAIRN_CA_FILE, as a user would set it).
    let cli = |home: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-cli"))
            .arg("--home")
            .arg(homes.join(home))
            .args(args)
            .env("CAIRN_CA_FILE", dir.path().join("ca1.pem"))
            .env_remove("CAIRN_HOME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    cli("bob", &["init", "--server", &url, "--handle", "bob"]);

    // The library (the app's client) with the CA: a space, a note, a picture over https.
    cairn_client::tls::trust_ca_pem(ca1.pem.as_bytes()).unwrap();
    let mut alice =
        Client::init(&homes.join("alice"), &url, &Handle::from_static("alice"), None, None)
            .await
            .unwrap();
    let space = alice.create_space("roof", Policy::default()).await.unwrap();
    alice.invite(&space, &Handle::from_static("bob"), Role::Member).await.unwrap();
    alice.post(&space, Draft::text("over TLS", [0.0; 3])).await.unwrap();
    let pic = Draft { content: Content::Image(png()), ..Draft::text("", [0.0; 3]) };
    alice.post(&space, pic).await.unwrap();
    let listed = cli("bob", &["notes", "roof"]);
    assert!(listed.contains("over TLS"), "{listed}");
    let out = dir.path().join("got");
    let id = alice.notes(&space).unwrap()[1].note_id.to_hex();
    cli("bob", &["note", "get", &id[..10], "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);

    // A certificate for another name, from a trusted CA: refused.
    let (other_cert, other_key) = server_cert(&ca1, &["cairn.test"], dir.path(), "other");
    let other = tls_server(&dir.path().join("other-server"), &other_cert, &other_key).await;
    let Err(e) = Client::init(
        &homes.join("misled"),
        &other.ws_url(),
        &Handle::from_static("misled"),
        None,
        None,
    )
    .await
    else {
        panic!("connected to a certificate for another name")
    };
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    other.shutdown().await.unwrap();

    // New files (from a CA not trusted yet), then SIGHUP: the open connection carries on,
    // a new one meets the new certificate.
    let (new_cert, new_key) = server_cert(&ca2, &["127.0.0.1"], dir.path(), "next");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    alice.sync().await.expect("the open connection still works");
    let mut fresh = Client::open(&homes.join("alice"), None).unwrap();
    let e = fresh.connect().await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    cairn_client::tls::trust_ca_pem(ca2.pem.as_bytes()).unwrap();
    fresh.connect().await.unwrap();
    fresh.sync().await.unwrap();
    assert_eq!(fresh.notes(&space).unwrap().len(), 2);
    server.shutdown().await.unwrap();
}
