//! Opus in Ogg (RFC 7845): an `OpusHead` page, an `OpusTags` page, then audio pages whose
//! granule positions count 48 kHz samples including the encoder's pre-skip; the last page's
//! granule trims the padding of the final frame.

use crate::{
    BITRATE, FRAME, MAX_DURATION_MS, SAMPLE_RATE, VoiceError, VoiceNote, duration_ms, waveform,
};
use ogg::{PacketReader, PacketWriteEndInfo, PacketWriter};
use std::io::Cursor;

const SERIAL: u32 = 0x6361_6972; // "cair"
/// Packets per Ogg page (one second of audio).
const PACKETS_PER_PAGE: usize = 50;

fn codec(e: opus::Error) -> VoiceError {
    VoiceError::Codec(e.to_string())
}

fn opus_head(pre_skip: u16) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(1); // channels
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // input sample rate, informational
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family 0: mono or stereo
    h
}

fn opus_tags() -> Vec<u8> {
    let vendor = b"cairn-voice";
    let mut t = b"OpusTags".to_vec();
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor);
    t.extend_from_slice(&0u32.to_le_bytes()); // no user comments
    t
}

/// Encodes mono 48 kHz PCM (`-1.0..=1.0`) as an Ogg/Opus voice note.
pub fn encode_pcm(samples: &[f32]) -> Result<VoiceNote, VoiceError> {
    if samples.is_empty() {
        return Err(VoiceError::Empty);
    }
    let duration = duration_ms(samples.len());
    if duration > MAX_DURATION_MS {
        return Err(VoiceError::TooLong(duration / 1000));
    }
    let mut enc = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
        .map_err(codec)?;
    enc.set_bitrate(opus::Bitrate::Bits(BITRATE)).map_err(codec)?;
    let pre_skip = u16::try_from(enc.get_lookahead().map_err(codec)?)
        .map_err(|_| VoiceError::Codec("lookahead".into()))?;

    let mut out = Vec::with_capacity(samples.len() / 16);
    {
        let mut w = PacketWriter::new(Cursor::new(&mut out));
        let io = |e: std::io::Error| VoiceError::Codec(e.to_string());
        w.write_packet(opus_head(pre_skip), SERIAL, PacketWriteEndInfo::EndPage, 0).map_err(io)?;
        w.write_packet(opus_tags(), SERIAL, PacketWriteEndInfo::EndPage, 0).map_err(io)?;
        let frames = samples.len().div_ceil(FRAME);
        let mut frame = vec![0f32; FRAME];
        let mut packet = vec![0u8; 1500];
        for i in 0..frames {
            let chunk = &samples[i * FRAME..((i + 1) * FRAME).min(samples.len())];
            frame[..chunk.len()].copy_from_slice(chunk);
            frame[chunk.len()..].fill(0.0);
            let n = enc.encode_float(&frame, &mut packet).map_err(codec)?;
            let last = i + 1 == frames;
            // Granule: samples decoded through this packet, pre-skip included; the last
            // page's granule marks the true end (RFC 7845 §4).
            let granule = if last {
                u64::from(pre_skip) + samples.len() as u64
            } else {
                u64::from(pre_skip) + ((i + 1) * FRAME) as u64
            };
            let info = if last {
                PacketWriteEndInfo::EndStream
            } else if (i + 1) % PACKETS_PER_PAGE == 0 {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            w.write_packet(packet[..n].to_vec(), SERIAL, info, granule).map_err(io)?;
        }
    }
    Ok(VoiceNote { ogg_opus: out, waveform: waveform(samples), duration_ms: duration })
}

/// Decodes an Ogg/Opus stream (mono or stereo, downmixed) to mono 48 kHz PCM, honouring
/// pre-skip and end trimming.
pub fn decode_ogg_opus(bytes: &[u8]) -> Result<Vec<f32>, VoiceError> {
    let bad = |why: &str| VoiceError::BadOggOpus(why.to_owned());
    let mut r = PacketReader::new(Cursor::new(bytes));
    let head = r
        .read_packet()
        .map_err(|e| VoiceError::BadOggOpus(e.to_string()))?
        .ok_or_else(|| bad("empty stream"))?;
    let h = &head.data;
    if h.len() < 19 || &h[..8] != b"OpusHead" || h[8] != 1 {
        return Err(bad("no OpusHead"));
    }
    let channels = match h[9] {
        1 => opus::Channels::Mono,
        2 => opus::Channels::Stereo,
        _ => return Err(bad("only mono and stereo are supported")),
    };
    let n_ch = h[9] as usize;
    let pre_skip = u16::from_le_bytes([h[10], h[11]]) as usize;
    let tags = r
        .read_packet()
        .map_err(|e| VoiceError::BadOggOpus(e.to_string()))?
        .ok_or_else(|| bad("no OpusTags"))?;
    if tags.data.len() < 8 || &tags.data[..8] != b"OpusTags" {
        return Err(bad("no OpusTags"));
    }
    let mut dec = opus::Decoder::new(SAMPLE_RATE, channels).map_err(codec)?;
    let mut pcm = Vec::new();
    let mut buf = vec![0f32; 5760 * n_ch];
    let mut end_granule = None;
    loop {
        let packet = match r.read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Err(VoiceError::BadOggOpus(e.to_string())),
        };
        let n = dec
            .decode_float(&packet.data, &mut buf, false)
            .map_err(|e| VoiceError::BadOggOpus(e.to_string()))?;
        for f in 0..n {
            let s: f32 = (0..n_ch).map(|c| buf[f * n_ch + c]).sum::<f32>() / n_ch as f32;
            pcm.push(s);
        }
        if pcm.len() > (MAX_DURATION_MS as usize + 1000) * 48 {
            return Err(VoiceError::TooLong(duration_ms(pcm.len()) / 1000));
        }
        if packet.last_in_stream() {
            end_granule = Some(packet.absgp_page() as usize);
            break;
        }
    }
    let end = end_granule.ok_or_else(|| bad("the stream is truncated (no end-of-stream page)"))?;
    if end < pre_skip || end > pcm.len() + FRAME {
        return Err(bad("inconsistent granule positions"));
    }
    let end = end.min(pcm.len());
    let out = pcm[pre_skip.min(end)..end].to_vec();
    if out.is_empty() {
        return Err(VoiceError::Empty);
    }
    Ok(out)
}
