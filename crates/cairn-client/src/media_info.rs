//! Facts about media files that the client checks before sending them.

use crate::error::ClientError;

pub struct OggOpusInfo {
    pub channels: u8,
    pub pre_skip: u16,
    pub duration_ms: u32,
}

/// Reads an Ogg/Opus file's header (RFC 7845) and its duration from the last page's
/// granule position. Refuses anything else.
pub fn ogg_opus_info(bytes: &[u8]) -> Result<OggOpusInfo, ClientError> {
    let bad = |why: &str| ClientError::Invalid(format!("not an Ogg/Opus file: {why}"));
    if bytes.len() < 47 || &bytes[..4] != b"OggS" {
        return Err(bad("no Ogg page"));
    }
    let segments = bytes[26] as usize;
    let data = 27 + segments;
    if bytes.len() < data + 19 || &bytes[data..data + 8] != b"OpusHead" {
        return Err(bad("no OpusHead"));
    }
    let channels = bytes[data + 9];
    let pre_skip = u16::from_le_bytes([bytes[data + 10], bytes[data + 11]]);
    // The last page: scan back for its capture pattern.
    let last = (0..bytes.len() - 27)
        .rev()
        .find(|&i| &bytes[i..i + 4] == b"OggS")
        .ok_or_else(|| bad("no last page"))?;
    let granule = u64::from_le_bytes(bytes[last + 6..last + 14].try_into().expect("8 bytes"));
    if granule == u64::MAX {
        return Err(bad("unfinished stream"));
    }
    let samples = granule.saturating_sub(u64::from(pre_skip));
    Ok(OggOpusInfo { channels, pre_skip, duration_ms: (samples * 1000 / 48_000) as u32 })
}
