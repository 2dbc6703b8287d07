//! Audio files in: Ogg/Opus through libopus, everything else (WAV, FLAC, MP3, Ogg/Vorbis)
//! through symphonia; downmixed to mono and resampled to 48 kHz.

use crate::{MAX_DURATION_MS, MAX_INPUT_BYTES, SAMPLE_RATE, VoiceError, decode_ogg_opus};
use rubato::{FftFixedInOut, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

fn bad(e: impl std::fmt::Display) -> VoiceError {
    VoiceError::BadInput(e.to_string())
}

/// Decodes any supported audio file to mono 48 kHz PCM.
pub fn decode_file(bytes: &[u8]) -> Result<Vec<f32>, VoiceError> {
    if bytes.is_empty() {
        return Err(VoiceError::Empty);
    }
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(VoiceError::TooLarge);
    }
    if bytes.starts_with(b"OggS") && bytes.windows(8).take(200).any(|w| w == b"OpusHead") {
        return decode_ogg_opus(bytes);
    }
    let (mono, rate) = decode_with_symphonia(bytes)?;
    if mono.is_empty() {
        return Err(VoiceError::Empty);
    }
    resample(&mono, rate)
}

fn decode_with_symphonia(bytes: &[u8]) -> Result<(Vec<f32>, u32), VoiceError> {
    let mss =
        MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(bad)?;
    let mut format = probed.format;
    let track = format.default_track().ok_or_else(|| bad("no audio track"))?.clone();
    let rate = track.codec_params.sample_rate.ok_or_else(|| bad("unknown sample rate"))?;
    if !(4_000..=384_000).contains(&rate) {
        return Err(bad(format!("sample rate {rate} Hz is out of range")));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(bad)?;
    let max_samples = (u64::from(MAX_DURATION_MS) + 1000) * u64::from(rate) / 1000;
    let mut mono = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(symphonia::core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break;
            }
            Err(e) => return Err(bad(e)),
        };
        if packet.track_id() != track.id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(bad)?;
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks(channels) {
            mono.push(frame.iter().sum::<f32>() / channels as f32);
        }
        if mono.len() as u64 > max_samples {
            return Err(VoiceError::TooLong((mono.len() as u64 / u64::from(rate)) as u32));
        }
    }
    Ok((mono, rate))
}

/// Resamples mono PCM from `rate` to 48 kHz with an FFT resampler.
pub fn resample(mono: &[f32], rate: u32) -> Result<Vec<f32>, VoiceError> {
    if rate == SAMPLE_RATE {
        return Ok(mono.to_vec());
    }
    let chunk = 1024;
    let mut r =
        FftFixedInOut::<f32>::new(rate as usize, SAMPLE_RATE as usize, chunk, 1).map_err(bad)?;
    let mut out = Vec::with_capacity(mono.len() * SAMPLE_RATE as usize / rate as usize + 4096);
    let delay = r.output_delay();
    let mut pos = 0;
    loop {
        let need = r.input_frames_next();
        let mut block = vec![0f32; need];
        let take = mono.len().saturating_sub(pos).min(need);
        block[..take].copy_from_slice(&mono[pos..pos + take]);
        pos += take;
        let res = r.process(&[block], None).map_err(bad)?;
        out.extend_from_slice(&res[0]);
        if pos >= mono.len()
            && out.len() >= delay + mono.len() * SAMPLE_RATE as usize / rate as usize
        {
            break;
        }
    }
    let expected = (mono.len() as u64 * u64::from(SAMPLE_RATE) / u64::from(rate)) as usize;
    Ok(out[delay.min(out.len())..].iter().copied().take(expected).collect())
}
