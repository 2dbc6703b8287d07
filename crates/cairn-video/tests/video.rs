//! Clips made by FFmpeg at test time go through the transcoder and come back out of the
//! decoder as what they were: length, size, the bars' colours at sampled times, the tone.

use cairn_video::synthetic::{self, Spec, bar_colour};
use cairn_video::{Decoder, MAX_FPS, VideoError, decode_audio, transcode};
use std::path::PathBuf;

fn make(dir: &tempfile::TempDir, name: &str, spec: &Spec) -> PathBuf {
    let path = dir.path().join(name);
    synthetic::make(&path, spec).expect("make the test clip");
    path
}

/// Every frame of a clip: (ms, width, height, rgba).
fn frames(webm: &[u8]) -> Vec<cairn_video::Frame> {
    let mut d = Decoder::new(webm).expect("a canonical clip opens");
    let mut out = Vec::new();
    while let Some(f) = d.next_frame().expect("decodes") {
        out.push(f);
    }
    out
}

fn pixel(f: &cairn_video::Frame, x: u32, y: u32) -> [u8; 3] {
    let i = ((y * f.width + x) * 4) as usize;
    [f.rgba[i], f.rgba[i + 1], f.rgba[i + 2]]
}

/// The bars of `f` against what second `second` shows, each channel within `tol`.
fn assert_bars(f: &cairn_video::Frame, second: u32) {
    for bar in 0..synthetic::BARS {
        let x = (2 * bar + 1) * f.width / (2 * synthetic::BARS);
        let got = pixel(f, x, f.height / 2);
        let want = bar_colour(bar, second);
        let off = (0..3).map(|c| (got[c] as i32 - want[c] as i32).abs()).max().unwrap();
        assert!(off <= 40, "bar {bar} at {} ms: {got:?}, want {want:?}", f.ms);
    }
}

/// The frequency of a tone from its upward zero crossings, interpolated.
fn tone_hz(samples: &[f32], rate: u32) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..samples.len() {
        let (a, b) = (samples[i - 1], samples[i]);
        if a < 0.0 && b >= 0.0 {
            crossings.push(i as f64 - 1.0 + (-a / (b - a)) as f64);
        }
    }
    let n = crossings.len();
    assert!(n > 10, "too few crossings for a tone");
    (n - 1) as f64 * rate as f64 / (crossings[n - 1] - crossings[0])
}

#[test]
fn an_mp4_from_a_phone_becomes_a_canonical_clip_that_shows_and_sounds_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let tags = [("location", "+48.8584+002.2945/"), ("make", "TestPhone"), ("title", "Secret")];
    // A MOV, as a phone writes it: FFmpeg's MOV muxer keeps location and title.
    let src =
        make(&dir, "phone.mov", &Spec { container: "mov", metadata: &tags, ..Spec::default() });
    let source = std::fs::read(&src).unwrap();
    let has = |hay: &[u8], v: &str| hay.windows(v.len()).any(|w| w == v.as_bytes());
    assert!(has(&source, "+48.8584+002.2945/") && has(&source, "Secret"), "the source's tags");
    let clip = transcode(&src).unwrap();
    for (_, v) in tags {
        let v = v.as_bytes();
        assert!(
            !clip.webm.windows(v.len()).any(|w| w == v),
            "{:?} survived",
            String::from_utf8_lossy(v)
        );
    }
    assert_eq!((clip.width, clip.height), (1280, 720));
    assert!(clip.has_audio);
    assert!((clip.duration_ms as i64 - 3000).abs() <= 34, "duration {}", clip.duration_ms);
    assert_eq!((clip.poster.width, clip.poster.height), (1280, 720));
    assert!(&clip.webm[..4] == b"\x1a\x45\xdf\xa3", "an EBML (WebM) file");

    let d = Decoder::new(&clip.webm).unwrap();
    assert!((d.duration_ms() as i64 - 3000).abs() <= 34, "container says {}", d.duration_ms());
    let fs = frames(&clip.webm);
    assert!((89..=91).contains(&fs.len()), "{} frames", fs.len());
    let last = fs.last().unwrap();
    assert!((last.ms as i64 + 33 - 3000).abs() <= 34, "last frame at {}", last.ms);
    for at in [200, 1500, 2500] {
        let f = fs.iter().find(|f| f.ms >= at).unwrap();
        assert_bars(f, at / 1000);
    }

    let pcm = decode_audio(&clip.webm).unwrap().expect("it has sound");
    assert_eq!((pcm.rate, pcm.channels), (48_000, 1));
    let secs = pcm.samples.len() as f64 / 48_000.0;
    assert!((secs - 3.0).abs() < 0.05, "{secs} s of sound");
    let hz = tone_hz(&pcm.samples[24_000..120_000], 48_000);
    assert!((hz - 440.0).abs() < 2.0, "tone {hz} Hz");
}

#[test]
fn large_fast_and_portrait_sources_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // 1080p at 60 fps, WebM/VP9 without sound.
    let spec = Spec {
        container: "webm",
        video_codec: "libvpx-vp9",
        video_options: &[("deadline", "realtime"), ("cpu-used", "8")],
        width: 1920,
        height: 1080,
        fps: 60,
        seconds: 2.0,
        audio: None,
        ..Spec::default()
    };
    let clip = transcode(&make(&dir, "big.webm", &spec)).unwrap();
    assert_eq!((clip.width, clip.height), (1280, 720));
    assert!(!clip.has_audio);
    assert!(decode_audio(&clip.webm).unwrap().is_none());
    let fs = frames(&clip.webm);
    assert!(fs.len() as u32 <= 2 * MAX_FPS + 1, "{} frames in 2 s", fs.len());
    assert!(fs.len() >= 55, "{} frames in 2 s", fs.len());
    assert_bars(fs.iter().find(|f| f.ms >= 1200).unwrap(), 1);

    // Portrait in a MOV.
    let spec =
        Spec { container: "mov", width: 1080, height: 1920, seconds: 1.0, ..Spec::default() };
    let clip = transcode(&make(&dir, "tall.mov", &spec)).unwrap();
    assert_eq!((clip.width, clip.height), (720, 1280));
}

#[test]
fn seeking_lands_on_the_asked_time() {
    let dir = tempfile::tempdir().unwrap();
    let clip = transcode(&make(&dir, "s.mp4", &Spec { seconds: 4.0, ..Spec::default() })).unwrap();
    let mut d = Decoder::new(&clip.webm).unwrap();
    d.seek(2500).unwrap();
    let f = d.next_frame().unwrap().unwrap();
    assert!((2500..2540).contains(&f.ms), "after a seek to 2500: {}", f.ms);
    assert_bars(&f, 2);
    d.seek(100).unwrap();
    let f = d.next_frame().unwrap().unwrap();
    assert!((100..140).contains(&f.ms), "back to 100: {}", f.ms);
    assert_bars(&f, 0);
}

/// Finds `needle` in `hay` (the first occurrence).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("the element is there")
}

fn refused(bytes: &[u8], name: &str) -> VideoError {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    match transcode(&p) {
        Ok(_) => panic!("{name} was accepted"),
        Err(e) => e,
    }
}

/// A small VP9 WebM (no sound), as bytes, for patching.
fn small_webm(seconds: f32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        container: "webm",
        video_codec: "libvpx-vp9",
        video_options: &[("deadline", "realtime"), ("cpu-used", "8")],
        width: 320,
        height: 240,
        seconds,
        audio: None,
        ..Spec::default()
    };
    std::fs::read(make(&dir, "small.webm", &spec)).unwrap()
}

#[test]
fn hostile_files_are_refused_with_a_reason() {
    // Nothing, noise, and a text file.
    assert!(matches!(refused(b"", "empty.mp4"), VideoError::Unreadable(_)));
    let noise: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    assert!(matches!(refused(&noise, "noise.mp4"), VideoError::Unreadable(_)));

    let webm = small_webm(3.0);
    // Cut in half: it ends long before the 3 s it claims.
    let e = refused(&webm[..webm.len() / 2], "cut.webm");
    assert!(matches!(e, VideoError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");

    // An MP4 cut short loses its index (moov at the end).
    let dir = tempfile::tempdir().unwrap();
    let mp4 = std::fs::read(make(&dir, "a.mp4", &Spec::default())).unwrap();
    assert!(matches!(refused(&mp4[..mp4.len() * 2 / 3], "cut.mp4"), VideoError::Unreadable(_)));

    // Noise over the middle of the picture data.
    let mut mangled = mp4.clone();
    let mid = mp4.len() / 2;
    for (i, b) in mangled[mid..mid + 4096].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(2654435761).rotate_left(7) as u8;
    }
    let e = refused(&mangled, "mangled.mp4");
    assert!(matches!(e, VideoError::Corrupt(_)), "{e}");

    // A codec FFmpeg knows no decoder for: the track's CodecID "V_VP9" made "V_QQ9".
    let mut odd = webm.clone();
    let at = find(&odd, b"V_VP9");
    odd[at + 2..at + 4].copy_from_slice(b"QQ");
    let e = refused(&odd, "odd.webm");
    assert!(matches!(e, VideoError::Unsupported(_)), "{e}");

    // Absurd dimensions: a real (valid) VP9 stream 8200 pictures wide.
    let spec = Spec {
        container: "webm",
        video_codec: "libvpx-vp9",
        video_options: &[("deadline", "realtime"), ("cpu-used", "8")],
        width: 8200,
        height: 16,
        seconds: 0.2,
        audio: None,
        ..Spec::default()
    };
    let e = transcode(&make(&dir, "wide.webm", &spec)).err().expect("refused");
    assert!(matches!(e, VideoError::TooLarge(8200, 16)), "{e}");

    // An absurd duration: the Segment's Duration (0x4489, an 8-byte float of milliseconds).
    let mut long = webm.clone();
    let d = find(&long, &[0x44, 0x89, 0x88]) + 3;
    long[d..d + 8].copy_from_slice(&(1.0e12f64).to_be_bytes());
    let e = refused(&long, "long.webm");
    assert!(matches!(e, VideoError::TooLong(_)), "{e}");

    // Claims one second, holds three.
    let mut liar = webm.clone();
    liar[d..d + 8].copy_from_slice(&(1000.0f64).to_be_bytes());
    let e = refused(&liar, "liar.webm");
    assert!(matches!(e, VideoError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("more than"), "{e}");

    // A file with sound and no picture (a WAV of silence).
    let mut wav = Vec::new();
    let data = 8000u32 * 2;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    for v in [8000u32, 16000] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    for v in [2u16, 16] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data.to_le_bytes());
    wav.resize(44 + data as usize, 0);
    assert!(matches!(refused(&wav, "sound.mp4"), VideoError::NoVideo));
}

#[test]
fn the_decoder_refuses_what_is_not_a_canonical_clip() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 =
        std::fs::read(make(&dir, "a.mp4", &Spec { seconds: 0.5, ..Spec::default() })).unwrap();
    assert!(matches!(Decoder::new(&mp4), Err(VideoError::NotCanonical(_))));
    assert!(matches!(decode_audio(&mp4), Err(VideoError::NotCanonical(_))));
    assert!(matches!(Decoder::new(b"not a clip"), Err(VideoError::Unreadable(_))));
    // A canonical clip cut short plays what it has and ends.
    let clip = transcode(&make(&dir, "b.mp4", &Spec { seconds: 2.0, ..Spec::default() })).unwrap();
    let cut = &clip.webm[..clip.webm.len() / 2];
    let mut d = Decoder::new(cut).unwrap();
    let mut n = 0;
    while let Ok(Some(_)) = d.next_frame() {
        n += 1;
    }
    assert!(n > 0 && n < 60, "{n} frames of a clip cut in half");
}

/// Runs `f` on a thread and waits for it at most `secs`: a decoder that blocks where it
/// should not fails the test instead of hanging it.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} failed (see above) or took over {secs} s"))
}

#[test]
fn a_clip_plays_while_it_arrives_with_its_sound_and_seeks_before_and_after_it_is_whole() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let clip = transcode(&make(&dir, "a.mp4", &Spec { seconds: 3.0, ..Spec::default() })).unwrap();
    let webm = clip.webm.clone();
    let path = dir.path().join("arriving.webm");
    // A quarter has arrived.
    let quarter = webm.len() / 4;
    std::fs::write(&path, &webm[..quarter]).unwrap();
    let total = webm.len() as u64;
    // (The decoder stays on one thread: FFmpeg's contexts are not `Send`.)
    let (first, first_sound, had, sought, sought_sound, frames, sound) =
        within(60, "playing a clip as it arrives", move || {
            let file = std::fs::File::open(&path).unwrap();
            let mut d = Decoder::open_arriving(file, total).unwrap();
            assert!(d.has_sound());
            let first = d.next_frame().unwrap().unwrap();
            let first_sound = d.take_sound();
            let had = std::fs::metadata(&path).unwrap().len();
            // A seek before it is whole: it goes on from the start, to the place, as the
            // rest comes.
            d.seek(2000).unwrap();
            let writer = std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                for piece in webm[quarter..].chunks(16 * 1024) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    f.write_all(piece).unwrap();
                }
            });
            let sought = d.next_frame().unwrap().unwrap();
            for _ in 0..10 {
                d.next_frame().unwrap().unwrap();
            }
            let sought_sound = d.take_sound();
            writer.join().unwrap();
            // Whole now: a seek back goes straight there, and it plays to its end.
            d.seek(500).unwrap();
            let mut frames = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f.ms);
            }
            (first, first_sound, had, sought, sought_sound, frames, d.take_sound())
        });
    assert_eq!(first.ms, 0);
    assert_bars(&first, 0);
    assert!(!first_sound.is_empty(), "its sound comes beside its pictures");
    assert!(had < total, "the first frame came before the rest arrived");
    assert!((2000..2040).contains(&sought.ms), "after a seek to 2000: {}", sought.ms);
    assert_bars(&sought, 2);
    let tone = tone_hz(&sought_sound, cairn_video::AUDIO_RATE);
    assert!((tone - 440.0).abs() < 5.0, "the tone from the place sought: {tone} Hz");
    assert!((500..540).contains(&frames[0]), "back to 500: {}", frames[0]);
    assert!(*frames.last().unwrap() >= 2900, "to the end: {:?}", frames.last());
    let secs = sound.len() as f64 / f64::from(cairn_video::AUDIO_RATE);
    assert!((secs - 2.5).abs() < 0.1, "the sound from 0.5 s to the end: {secs} s");
}

#[test]
fn a_clip_with_far_more_pictures_than_its_time_allows_is_refused() {
    // 240 pictures a second (a canonical clip has at most 30): a player would decode without
    // end to keep up.
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        container: "webm",
        video_codec: "libvpx-vp9",
        video_options: &[("deadline", "realtime"), ("cpu-used", "8")],
        width: 160,
        height: 120,
        fps: 240,
        seconds: 2.0,
        audio: None,
        ..Spec::default()
    };
    let webm = std::fs::read(make(&dir, "fast.webm", &spec)).unwrap();
    let mut d = Decoder::new(&webm).unwrap();
    let err = loop {
        match d.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("all of it decoded"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, VideoError::Corrupt(ref m) if m.contains("pictures")), "{err}");
}
