//! Capture from the default input device with cpal, on its own thread (cpal streams are not
//! `Send`), mixed to mono and resampled to 48 kHz when the device offers another rate.

use bevy::prelude::*;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

struct Capture {
    samples: Arc<Mutex<Vec<f32>>>,
    stop: Arc<AtomicBool>,
    rate: u32,
    thread: std::thread::JoinHandle<()>,
}

#[derive(Resource, Default)]
pub struct Recorder {
    capture: Option<Capture>,
}

impl Recorder {
    pub fn is_recording(&self) -> bool {
        self.capture.is_some()
    }

    /// Starts recording from the default microphone.
    pub fn start(&mut self) -> Result<(), String> {
        if self.capture.is_some() {
            return Ok(());
        }
        let device =
            cpal::default_host().default_input_device().ok_or("no microphone was found")?;
        let config = device
            .default_input_config()
            .map_err(|e| format!("the microphone cannot be opened: {e}"))?;
        let rate = config.sample_rate();
        let channels = usize::from(config.channels()).max(1);
        let samples: Arc<Mutex<Vec<f32>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (s, st) = (samples.clone(), stop.clone());
        let max = (cairn_voice::MAX_DURATION_MS as usize / 1000 + 1) * rate as usize;
        let thread = std::thread::spawn(move || {
            let stream = device.build_input_stream(
                &config.into(),
                move |data: &[f32], _: &cpal::InputCallbackInfo| {
                    let mut buf = s.lock().expect("capture buffer");
                    if buf.len() < max {
                        buf.extend(
                            data.chunks(channels).map(|f| f.iter().sum::<f32>() / channels as f32),
                        );
                    }
                },
                |e| warn!("microphone: {e}"),
                None,
            );
            let stream = match stream.and_then(|s| {
                s.play().map(|_| s).map_err(|e| cpal::BuildStreamError::BackendSpecific {
                    err: cpal::BackendSpecificError { description: e.to_string() },
                })
            }) {
                Ok(s) => {
                    let _ = started_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = started_tx.send(Err(format!("the microphone cannot be opened: {e}")));
                    return;
                }
            };
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(stream);
        });
        started_rx.recv().map_err(|_| "the microphone thread failed".to_string())??;
        self.capture = Some(Capture { samples, stop, rate, thread });
        Ok(())
    }

    /// Stops and returns mono 48 kHz PCM (`None` when nothing was recorded).
    pub fn stop(&mut self) -> Option<Vec<f32>> {
        let c = self.capture.take()?;
        c.stop.store(true, Ordering::Relaxed);
        let _ = c.thread.join();
        let pcm = std::mem::take(&mut *c.samples.lock().expect("capture buffer"));
        if pcm.len() < (c.rate / 10) as usize {
            return None; // under 0.1 s: a slip of the key
        }
        cairn_voice::resample(&pcm, c.rate).ok()
    }
}
