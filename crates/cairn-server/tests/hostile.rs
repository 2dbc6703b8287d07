//! Hostile input: each case gets its close code or error, and a normal client of the same
//! server still works afterwards.

mod common;
use cairn_proto::*;
use common::*;
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A normal client registers, creates a space and posts: the server is fine.
async fn server_still_works(url: &str) {
    let dev = Device::new();
    let handle = format!("ok{}", hex::encode(&dev.id().0[..4]));
    let mut c = Client::register(url, &handle, &dev).await;
    let space = TestSpace::create(&mut c, &dev, Policy::default()).await;
    assert_eq!(post(&mut c, &note(&dev, space.id, 0, b"still fine")).await.unwrap().0, 1);
}

async fn hello(ws: &mut Ws) {
    let frame = ClientFrame {
        id: 1,
        request: Request::Hello { versions: vec![PROTOCOL_VERSION], client: "t".into() },
    };
    ws.send(Message::Binary(encode(&frame).into())).await.unwrap();
}

#[tokio::test]
async fn an_oversize_message_closes_with_1009() {
    let t = start().await;
    let url = t.server.ws_url();
    for size in [MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES * 3] {
        let mut ws = raw_connect(&url).await;
        hello(&mut ws).await;
        // Read while writing, as a real client does: the server stops reading at its cap.
        let (mut sink, mut stream) = futures_util::StreamExt::split(ws);
        let writer = tokio::spawn(async move {
            let _ = sink.send(Message::Binary(vec![0u8; size].into())).await;
        });
        let code = loop {
            match tokio::time::timeout(
                Duration::from_secs(10),
                futures_util::StreamExt::next(&mut stream),
            )
            .await
            .unwrap()
            {
                Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => break None,
            }
        };
        assert_eq!(code, Some(1009), "size {size}");
        writer.abort();
    }
    server_still_works(&url).await;
}

#[tokio::test]
async fn malformed_truncated_and_unknown_frames_get_an_error_and_1002() {
    let t = start().await;
    let url = t.server.ws_url();
    let valid = encode(&ClientFrame { id: 9, request: Request::ListSpaces });
    // An unknown request: valid CBOR map {"id": 1, "request": {"launch_rockets": {}}}.
    let unknown = encode(&serde_cbor_like_unknown());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", vec![0xff, 0x00, 0x13, 0x37]),
        ("truncated", valid[..valid.len() - 3].to_vec()),
        ("trailing bytes", [valid.clone(), vec![0]].concat()),
        ("unknown message", unknown),
        ("empty", vec![]),
        ("deep nesting", vec![0x81; 5000]),
    ];
    for (name, bytes) in cases {
        let mut ws = raw_connect(&url).await;
        hello(&mut ws).await;
        ws.send(Message::Binary(bytes.into())).await.unwrap();
        // The welcome, then the protocol error, then the close.
        let mut saw_error = false;
        loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                futures_util::StreamExt::next(&mut ws),
            )
            .await
            .unwrap()
            {
                Some(Ok(Message::Binary(b))) => {
                    if let ServerFrame::Response { result: Err(e), .. } =
                        decode::<ServerFrame>(&b).unwrap()
                    {
                        assert_eq!(e.code, ErrorCode::Malformed, "{name}");
                        saw_error = true;
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    assert_eq!(f.map(|f| u16::from(f.code)), Some(1002), "{name}");
                    break;
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(saw_error, "{name}: no error frame");
    }
    server_still_works(&url).await;
}

fn serde_cbor_like_unknown() -> std::collections::BTreeMap<String, ciborium_value::Value> {
    use ciborium_value::Value;
    let mut m = std::collections::BTreeMap::new();
    m.insert("id".to_string(), Value::Integer(1.into()));
    m.insert(
        "request".to_string(),
        Value::Map(vec![(Value::Text("launch_rockets".into()), Value::Map(vec![]))]),
    );
    m
}

#[tokio::test]
async fn a_wrong_protocol_version_is_refused_with_1002() {
    let t = start().await;
    let url = t.server.ws_url();
    let mut ws = raw_connect(&url).await;
    let frame = ClientFrame {
        id: 1,
        request: Request::Hello { versions: vec![99, 100], client: "future".into() },
    };
    ws.send(Message::Binary(encode(&frame).into())).await.unwrap();
    let mut code = None;
    loop {
        match futures_util::StreamExt::next(&mut ws).await {
            Some(Ok(Message::Binary(b))) => {
                let ServerFrame::Response { result: Err(e), .. } = decode(&b).unwrap() else {
                    panic!()
                };
                assert_eq!(e.code, ErrorCode::UnsupportedVersion);
            }
            Some(Ok(Message::Close(f))) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            _ => break,
        }
    }
    assert_eq!(code, Some(1002));
    server_still_works(&url).await;
}

#[tokio::test]
async fn text_frames_and_requests_before_hello_or_login_are_refused() {
    let t = start().await;
    let url = t.server.ws_url();
    let mut ws = raw_connect(&url).await;
    ws.send(Message::Text("{\"hello\":1}".into())).await.unwrap();
    assert_eq!(Client::expect_close(&mut ws).await.map(u16::from), Some(1003));
    // A request before hello.
    let mut ws = raw_connect(&url).await;
    ws.send(Message::Binary(encode(&ClientFrame { id: 1, request: Request::ListSpaces }).into()))
        .await
        .unwrap();
    assert_eq!(Client::expect_close(&mut ws).await.map(u16::from), Some(1002));
    // A request after hello but before login.
    let mut c = Client::connect(&url).await;
    assert_eq!(c.request(Request::ListSpaces).await.unwrap_err().code, ErrorCode::Unauthenticated);
    server_still_works(&url).await;
}

#[tokio::test]
async fn a_slow_handshake_is_closed() {
    let t = start_with(|c| c.handshake_timeout_s = 1).await;
    let url = t.server.ws_url();
    let started = std::time::Instant::now();
    let mut silent = raw_connect(&url).await;
    // Hello, but never a login.
    let mut lazy = Client::connect(&url).await;
    assert_eq!(Client::expect_close(&mut silent).await.map(u16::from), Some(1008));
    assert_eq!(Client::expect_close(&mut lazy.ws).await.map(u16::from), Some(1008));
    assert!(started.elapsed() < Duration::from_secs(5));
    server_still_works(&url).await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_while_others_carry_on() {
    let t = start_with(|c| {
        c.rate_per_connection = 50;
        c.rate_per_user = 1000;
    })
    .await;
    let url = t.server.ws_url();
    let dev = Device::new();
    let mut flooder = Client::register(&url, "flood", &dev).await;
    for _ in 0..2000 {
        if flooder.send(Request::ListSpaces).await == 0 {
            break;
        }
    }
    let (mut ok, mut limited, mut close) = (0, 0, None);
    loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut flooder.ws),
        )
        .await
        .unwrap()
        {
            Some(Ok(Message::Binary(b))) => match decode::<ServerFrame>(&b).unwrap() {
                ServerFrame::Response { result: Ok(_), .. } => ok += 1,
                ServerFrame::Response { result: Err(e), .. } => {
                    assert_eq!(e.code, ErrorCode::RateLimited);
                    limited += 1
                }
                _ => {}
            },
            Some(Ok(Message::Close(f))) => {
                close = f.map(|f| u16::from(f.code));
                break;
            }
            Some(Ok(_)) => {}
            _ => break,
        }
    }
    assert!((100..400).contains(&ok), "burst allowance then refusal: {ok} ok");
    assert!(limited > 0);
    assert_eq!(close, Some(1008));
    server_still_works(&url).await;
}

#[tokio::test]
async fn a_disallowed_origin_is_refused() {
    let t = start_with(|c| c.allowed_origins = vec!["https://cairn.example".into()]).await;
    let url = t.server.ws_url();
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    req.headers_mut().insert("origin", "https://cairn.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
    server_still_works(&url).await;
}
