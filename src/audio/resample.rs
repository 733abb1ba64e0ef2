//! Sample-rate conversion of mono 16-bit PCM with rubato's FFT resampler (fixed ratio, band-limited).

use rubato::{FftFixedIn, Resampler};

use super::AudioError;

fn failed(e: impl std::fmt::Display) -> AudioError {
    AudioError::Corrupt(format!("resampling failed: {e}"))
}

/// Converts `input` from `from` Hz to `to` Hz. The output has `len × to / from` samples and is
/// aligned with the input (the resampler's delay is removed).
pub fn resample(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, AudioError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    const CHUNK: usize = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).map_err(failed)?;
    let delay = r.output_delay();
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let x: Vec<f32> = input.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + 4 * CHUNK);
    let mut pos = 0;
    while pos + r.input_frames_next() <= x.len() {
        let n = r.input_frames_next();
        let o = r.process(&[&x[pos..pos + n]], None).map_err(failed)?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < x.len() {
        let o = r
            .process_partial(Some(&[&x[pos..]]), None)
            .map_err(failed)?;
        out.extend_from_slice(&o[0]);
    }
    // Flush the delay line with silence until every input sample has come out.
    while out.len() < delay + expected {
        let o = r.process_partial::<&[f32]>(None, None).map_err(failed)?;
        if o[0].is_empty() {
            break;
        }
        out.extend_from_slice(&o[0]);
    }
    Ok(out
        .iter()
        .skip(delay)
        .take(expected)
        .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                ((i as f64 * hz * std::f64::consts::TAU / f64::from(rate)).sin() * 10000.0) as i16
            })
            .collect()
    }

    #[test]
    fn upsampling_keeps_length_phase_and_level() {
        let src = tone(8000, 440.0, 8000);
        let out = resample(&src, 8000, 48000).unwrap();
        assert_eq!(out.len(), 48000);
        let want = tone(48000, 440.0, 48000);
        let err: f64 = out[4800..43200]
            .iter()
            .zip(&want[4800..43200])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .fold(0.0, f64::max);
        assert!(err < 300.0, "max error {err}");
    }

    #[test]
    fn downsampling_gives_the_expected_length() {
        assert_eq!(
            resample(&tone(44100, 300.0, 44100), 44100, 8000)
                .unwrap()
                .len(),
            8000
        );
        assert_eq!(
            resample(&tone(16000, 300.0, 1234), 16000, 8000)
                .unwrap()
                .len(),
            617
        );
    }
}
