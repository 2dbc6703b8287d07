//! Voice notes with real speech (espeak-ng), odd sample rates, and bad input everywhere.

use cairn_voice::*;
use std::process::Command;

fn espeak(text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-w", wav.to_str().unwrap(), text])
        .status()
        .expect("espeak-ng is required for this test (Debian package espeak-ng; ./dev test installs it)");
    assert!(status.success());
    std::fs::read(wav).unwrap()
}

/// A 16-bit PCM WAV file.
fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut w = b"RIFF".to_vec();
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
    w.extend_from_slice(&(channels * 2).to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

fn sine(rate: u32, secs: f32, hz: f32) -> Vec<i16> {
    (0..(rate as f32 * secs) as usize)
        .map(|i| ((i as f32 / rate as f32 * hz * std::f32::consts::TAU).sin() * 12_000.0) as i16)
        .collect()
}

/// RMS in 10 ms windows.
fn envelope(pcm: &[f32]) -> Vec<f32> {
    pcm.chunks(480)
        .map(|c| (c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32).sqrt())
        .collect()
}

fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ma, mb) = (a.iter().sum::<f32>() / n as f32, b.iter().sum::<f32>() / n as f32);
    let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va.sqrt() * vb.sqrt())
}

#[test]
fn real_speech_survives_encoding_and_other_players_accept_the_file() {
    let speech = espeak(
        "Hello from Cairn. The spare key is under the third stone, next to the blue door. Come by on Sunday.",
    );
    let pcm = decode_file(&speech).unwrap();
    let note = encode_pcm(&pcm).unwrap();
    let back = decode_ogg_opus(&note.ogg_opus).unwrap();

    let diff = back.len().abs_diff(pcm.len());
    assert!(diff <= FRAME, "duration differs by {diff} samples");
    assert_eq!(note.duration_ms, duration_ms(pcm.len()));
    let r = correlation(&envelope(&pcm), &envelope(&back));
    assert!(r > 0.9, "energy envelopes correlate at {r:.3}");
    let kbps = note.ogg_opus.len() as f64 * 8.0 / (f64::from(note.duration_ms) / 1000.0) / 1000.0;
    assert!((19.2..=28.8).contains(&kbps), "bitrate {kbps:.1} kbit/s");
    assert_eq!(note.waveform.len(), WAVEFORM_BARS);
    assert_eq!(*note.waveform.iter().max().unwrap(), 255);
    println!(
        "speech: {:.2} s, {kbps:.1} kbit/s, envelope correlation {r:.3}",
        f64::from(note.duration_ms) / 1000.0
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.ogg");
    std::fs::write(&file, &note.ogg_opus).unwrap();
    let out = Command::new("opusinfo")
        .arg(&file)
        .output()
        .expect("opusinfo is required (Debian package opus-tools)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "opusinfo refused the file:\n{text}");
    assert!(!text.contains("WARNING") && !text.contains("ERROR"), "opusinfo complained:\n{text}");
}

#[test]
fn odd_sample_rates_and_stereo_are_resampled_to_48_khz() {
    for rate in [8_000u32, 11_025, 22_050, 44_100, 96_000] {
        let pcm = decode_file(&wav(rate, 1, &sine(rate, 1.0, 440.0))).unwrap();
        assert!(pcm.len().abs_diff(48_000) < 200, "{rate} Hz -> {} samples", pcm.len());
        let note = encode_pcm(&pcm).unwrap();
        assert!(note.duration_ms.abs_diff(1000) <= 5);
    }
    let stereo: Vec<i16> = sine(44_100, 0.5, 300.0).iter().flat_map(|s| [*s, *s]).collect();
    let pcm = decode_file(&wav(44_100, 2, &stereo)).unwrap();
    assert!(pcm.len().abs_diff(24_000) < 200);
}

#[test]
fn ogg_opus_input_is_decoded_too() {
    let note =
        encode_pcm(&decode_file(&wav(48_000, 1, &sine(48_000, 0.8, 500.0))).unwrap()).unwrap();
    let again = encode_file(&note.ogg_opus).unwrap();
    assert!(again.duration_ms.abs_diff(800) <= 20);
}

#[test]
fn bad_input_on_every_path_is_an_error() {
    assert!(matches!(decode_file(&[]), Err(VoiceError::Empty)));
    assert!(matches!(encode_pcm(&[]), Err(VoiceError::Empty)));
    assert!(matches!(decode_file(&vec![0u8; MAX_INPUT_BYTES + 1]), Err(VoiceError::TooLarge)));
    assert!(matches!(
        encode_pcm(&vec![0.0; 48 * (MAX_DURATION_MS as usize + 1000)]),
        Err(VoiceError::TooLong(_))
    ));
    let mut seed = 0x2545F4914F6CDD1Du64;
    for len in [1usize, 10, 100, 1000, 10_000] {
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        assert!(decode_file(&garbage).is_err(), "{len} random bytes");
        assert!(decode_ogg_opus(&garbage).is_err());
    }
    let good = encode_pcm(&decode_file(&wav(48_000, 1, &sine(48_000, 2.0, 300.0))).unwrap())
        .unwrap()
        .ogg_opus;
    // Truncated Ogg/Opus: every cut point along the file.
    for cut in (1..good.len()).step_by(97) {
        assert!(decode_ogg_opus(&good[..cut]).is_err() || cut > good.len() - 10, "cut at {cut}");
    }
    // A corrupted page (bad CRC).
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x55;
    assert!(decode_ogg_opus(&corrupt).is_err());
    // A truncated WAV, and a WAV header with nothing after it.
    let w = wav(22_050, 1, &sine(22_050, 1.0, 440.0));
    assert!(decode_file(&w[..30]).is_err());
    assert!(decode_file(&w[..44]).is_err());
    // An Ogg/Opus header that lies about its channels.
    let mut lie = good.clone();
    let head = lie.windows(8).position(|w| w == b"OpusHead").unwrap();
    lie[head + 9] = 7;
    assert!(decode_ogg_opus(&lie).is_err());
}
