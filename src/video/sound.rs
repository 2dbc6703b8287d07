//! A playing clip's sound: the worker appends what it decodes, the note's spatial emitter
//! plays it, and the samples played are the clip's clock (the pictures follow the sound, so
//! they never drift apart, and a clip whose sound has not come yet waits instead of running
//! ahead of it).

use bevy::audio::{ChannelCount, Decodable, Sample, SampleRate, Source};
use bevy::prelude::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Samples per second (the canonical clip's: `cairn_video::AUDIO_RATE`), mono.
const RATE: u32 = cairn_video::AUDIO_RATE;
/// Samples moved to the audio thread at a time (10 ms): the clock's grain.
const BLOCK: usize = RATE as usize / 100;

/// The sound of one playback, shared by its worker, its emitter and the frame.
#[derive(Asset, TypePath, Clone, Default)]
pub struct ClipSound(Arc<Mutex<Queue>>);

#[derive(Default)]
struct Queue {
    samples: VecDeque<f32>,
    /// Seeks so far: samples of an older generation are dropped.
    generation: u32,
    /// Where the sound was started or last sought, and the samples played since.
    base_ms: u32,
    played: u64,
    /// The worker decoded the clip's last sound (for this generation).
    ended: bool,
    /// Nothing plays it (a silent clip, or no audio output): what the worker decodes goes.
    muted: bool,
}

impl ClipSound {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker's decoded sound, in order; dropped if a seek came since it was decoded.
    pub fn push(&self, generation: u32, samples: &[f32]) {
        let mut q = self.queue();
        if q.generation == generation && !q.muted {
            q.samples.extend(samples);
        }
    }

    /// The worker reached the end of the sound.
    pub fn end(&self, generation: u32) {
        let mut q = self.queue();
        if q.generation == generation {
            q.ended = true;
        }
    }

    /// A seek: what was queued goes, and the clock stands at `ms` until new sound plays.
    pub fn reset(&self, generation: u32, ms: u32) {
        let mut q = self.queue();
        *q = Queue { generation, base_ms: ms, muted: q.muted, ..Queue::default() };
    }

    /// Nothing will play this sound: the worker's samples are dropped from now on.
    pub fn mute(&self) {
        let mut q = self.queue();
        q.muted = true;
        q.samples.clear();
    }

    /// Where the sound is, in the clip's milliseconds.
    pub fn position_ms(&self) -> f64 {
        let q = self.queue();
        f64::from(q.base_ms) + q.played as f64 * 1000.0 / f64::from(RATE)
    }

    /// Whether all of the sound has been played (the clock no longer moves with it).
    pub fn played_out(&self) -> bool {
        let q = self.queue();
        q.ended && q.samples.is_empty()
    }
}

impl Decodable for ClipSound {
    type Decoder = ClipSoundSource;

    fn decoder(&self) -> ClipSoundSource {
        ClipSoundSource { sound: self.clone(), block: Vec::with_capacity(BLOCK), at: 0 }
    }
}

/// What the audio thread pulls: the queued sound, or silence while there is none (silence is
/// not counted as played, so the clock waits with it). It never ends by itself: the emitter
/// goes when the playback does.
pub struct ClipSoundSource {
    sound: ClipSound,
    block: Vec<f32>,
    at: usize,
}

impl Iterator for ClipSoundSource {
    type Item = Sample;

    fn next(&mut self) -> Option<Sample> {
        if self.at == self.block.len() {
            self.block.clear();
            self.at = 0;
            let mut q = self.sound.queue();
            let n = q.samples.len().min(BLOCK);
            self.block.extend(q.samples.drain(..n));
            q.played += n as u64;
            drop(q);
            if n == 0 {
                self.block.resize(BLOCK, 0.0);
            }
        }
        self.at += 1;
        Some(self.block[self.at - 1])
    }
}

impl Source for ClipSoundSource {
    fn current_span_len(&self) -> Option<usize> {
        None
    }
    fn channels(&self) -> ChannelCount {
        ChannelCount::new(1).expect("one")
    }
    fn sample_rate(&self) -> SampleRate {
        SampleRate::new(RATE).expect("not zero")
    }
    fn total_duration(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_the_sound_played_and_waits_through_silence() {
        let sound = ClipSound::default();
        let mut source = sound.decoder();
        sound.push(0, &vec![0.5; RATE as usize / 10]); // 100 ms
        let got: Vec<f32> = source.by_ref().take(RATE as usize / 20).collect();
        assert!(got.iter().all(|s| *s == 0.5));
        assert!((sound.position_ms() - 50.0).abs() < 1.0, "{}", sound.position_ms());
        // Past what was decoded: silence, and the clock stops at 100 ms.
        let got: Vec<f32> = source.by_ref().take(RATE as usize / 5).collect();
        assert_eq!(got.iter().filter(|s| **s == 0.5).count(), RATE as usize / 20);
        assert!((sound.position_ms() - 100.0).abs() < 1.0, "{}", sound.position_ms());
        assert!(!sound.played_out(), "the worker has not said it ended");
        sound.end(0);
        assert!(sound.played_out());
    }

    #[test]
    fn a_seek_drops_sound_of_the_old_generation() {
        let sound = ClipSound::default();
        sound.push(0, &[0.5; 4800]);
        sound.reset(1, 2000);
        sound.push(0, &[0.5; 4800]); // decoded before the worker saw the seek
        assert_eq!(sound.position_ms(), 2000.0);
        let mut source = sound.decoder();
        assert_eq!(source.next(), Some(0.0), "nothing of the new generation yet");
        sound.push(1, &[0.25; 4800]);
        let got: Vec<f32> = source.by_ref().skip(BLOCK - 1).take(10).collect();
        assert!(got.iter().all(|s| *s == 0.25));
        assert!(sound.position_ms() > 2000.0);
    }
}
