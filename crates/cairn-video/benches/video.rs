//! Video figures for docs/BENCHMARKS.md (`cargo bench -p cairn-video`): decoding the canonical
//! 720p format as a multiple of real time (target ≥ 4x, so two cores can play a clip and
//! still draw frames), re-encoding a 30 s 720p phone clip (target < 30 s), and the encoders
//! the format was chosen between, each on the same synthetic pictures.

use cairn_video::synthetic::{self, Spec};
use cairn_video::{Decoder, transcode};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cairn-video bench on {cores} cores");

    // A 30 s 720p H.264 + AAC clip, as a phone hands it over.
    let phone = dir.path().join("phone.mp4");
    let spec = Spec { seconds: 30.0, ..Spec::default() };
    synthetic::make(&phone, &spec).unwrap();
    let mut encode = Vec::new();
    let mut clip = None;
    for _ in 0..2 {
        let t = Instant::now();
        clip = Some(transcode(&phone).unwrap());
        encode.push(t.elapsed().as_secs_f64());
    }
    let clip = clip.unwrap();
    println!(
        "transcode 30 s 720p H.264+AAC -> VP9+Opus WebM: {:.1} s (median of 2; target < 30 s), {:.2} MB",
        median(encode),
        clip.webm.len() as f64 / 1e6
    );

    // Decoding it to RGBA frame by frame, with its sound in the same pass: from memory, and
    // as the app's worker does, from the media cache's file through the arriving-file pipe.
    let file = dir.path().join("clip.webm");
    std::fs::write(&file, &clip.webm).unwrap();
    let play = |mut d: Decoder| {
        let t = Instant::now();
        let mut last = 0;
        while let Some(f) = d.next_frame().unwrap() {
            last = f.ms;
            d.take_sound();
        }
        (f64::from(last) / 1000.0 + 1.0 / 30.0) / t.elapsed().as_secs_f64()
    };
    let (mut memory, mut arriving) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        memory.push(play(Decoder::new(&clip.webm).unwrap()));
        let opened = std::fs::File::open(&file).unwrap();
        arriving.push(play(Decoder::open_arriving(opened, clip.webm.len() as u64).unwrap()));
    }
    println!(
        "decode 720p VP9 to RGBA and its Opus sound, from memory: {:.1}x real time (median of 3; target >= 4x)",
        median(memory)
    );
    println!(
        "the same from the cache's file through the arriving-file pipe, as the app's worker: {:.1}x real time (median of 3; target >= 4x)",
        median(arriving)
    );
    let t = Instant::now();
    let pcm = cairn_video::decode_audio(&clip.webm).unwrap().unwrap();
    println!(
        "decode its Opus sound to mono: {:.0}x real time",
        pcm.samples.len() as f64 / 48_000.0 / t.elapsed().as_secs_f64()
    );

    // The candidates, encoding 10 s of 720p30 from pictures (the same work for each).
    let candidates: [(&str, &'static str, &[(&str, &str)]); 4] = [
        (
            "VP9 (libvpx, realtime, cpu-used 8)",
            "libvpx-vp9",
            &[("deadline", "realtime"), ("cpu-used", "8"), ("row-mt", "1"), ("tile-columns", "2")],
        ),
        (
            "VP8 (libvpx, realtime, cpu-used 8)",
            "libvpx",
            &[("deadline", "realtime"), ("cpu-used", "8")],
        ),
        ("AV1 (SVT-AV1, preset 12)", "libsvtav1", &[("preset", "12")]),
        (
            "AV1 (libaom, realtime, cpu-used 10)",
            "libaom-av1",
            &[("usage", "realtime"), ("cpu-used", "10")],
        ),
    ];
    for (name, codec, options) in candidates {
        let path = dir.path().join(format!("{codec}.webm"));
        let spec = Spec {
            container: "webm",
            video_codec: codec,
            video_options: options,
            seconds: 10.0,
            audio: None,
            ..Spec::default()
        };
        let t = Instant::now();
        match synthetic::make(&path, &spec) {
            Ok(()) => println!(
                "encode 10 s 720p30 with {name}: {:.1}x real time, {:.2} MB at 4 Mbit/s asked",
                10.0 / t.elapsed().as_secs_f64(),
                std::fs::metadata(&path).map_or(0, |m| m.len()) as f64 / 1e6
            ),
            Err(e) => println!("encode with {name}: not available here ({e})"),
        }
    }
}
