//! Sample-rate conversion of mono 16-bit PCM with rubato's FFT resampler (fixed ratio, band-limited).

use rubato::{FftFixedIn, Resampler};

use super::AudioError;

fn failed(e: impl std::fmt::Display) -> AudioError {
    AudioError::Corrupt(format!("resampling failed: {e}"))
}

/// Input samples per resampler call.
const CHUNK: usize = 1024;

/// A streaming sample-rate converter: [`StreamResampler::push`] chunks of any length, then
/// [`StreamResampler::finish`]. The whole output has `len × to / from` samples (rounded down) for
/// an input of `len`, aligned with the input (the resampler's delay is removed), exactly as
/// [`resample`] makes it from the whole input at once. Memory: one chunk in and out.
pub struct StreamResampler {
    /// `None` when the rates are equal: samples pass through.
    fft: Option<FftState>,
}

struct FftState {
    r: FftFixedIn<f32>,
    from: u64,
    to: u64,
    delay: u64,
    /// Input not yet handed to the resampler (less than one call's worth).
    pending: Vec<f32>,
    /// Input samples pushed so far.
    consumed: u64,
    /// Raw output (delay included) not yet handed out.
    tail: Vec<f32>,
    /// Raw output samples handed out or dropped so far (the index of `tail[0]`).
    drained: u64,
}

fn to_i16(v: f32) -> i16 {
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

impl FftState {
    /// Hands out raw output below index `limit`, dropping the first `delay` samples.
    fn drain(&mut self, limit: u64, out: &mut Vec<i16>) {
        let n = limit
            .saturating_sub(self.drained)
            .min(self.tail.len() as u64) as usize;
        let skip = self.delay.saturating_sub(self.drained).min(n as u64) as usize;
        out.extend(self.tail[skip..n].iter().map(|&v| to_i16(v)));
        self.tail.drain(..n);
        self.drained += n as u64;
    }

    /// Output samples an input of `consumed` samples ends with.
    fn expected(&self) -> u64 {
        self.consumed * self.to / self.from
    }
}

impl StreamResampler {
    /// A converter from `from` Hz to `to` Hz (mono).
    pub fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        if from == to {
            return Ok(Self { fft: None });
        }
        let r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1).map_err(failed)?;
        Ok(Self {
            fft: Some(FftState {
                delay: r.output_delay() as u64,
                r,
                from: u64::from(from),
                to: u64::from(to),
                pending: Vec::with_capacity(CHUNK),
                consumed: 0,
                tail: Vec::new(),
                drained: 0,
            }),
        })
    }

    /// Converts the next samples, appending what is ready to `out` (the rest follows with later
    /// pushes or `finish`).
    pub fn push(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), AudioError> {
        let Some(st) = self.fft.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        st.consumed += input.len() as u64;
        let mut input = input;
        while !input.is_empty() {
            let need = st.r.input_frames_next();
            let take = (need - st.pending.len()).min(input.len());
            st.pending
                .extend(input[..take].iter().map(|&s| f32::from(s) / 32768.0));
            input = &input[take..];
            if st.pending.len() == need {
                let o = st.r.process(&[&st.pending], None).map_err(failed)?;
                st.tail.extend_from_slice(&o[0]);
                st.pending.clear();
            }
        }
        // Whatever the input's final length, the output is at least this long.
        let limit = st.delay + st.expected();
        st.drain(limit, out);
        Ok(())
    }

    /// Converts what is left and flushes the resampler's delay line, appending the last samples.
    pub fn finish(&mut self, out: &mut Vec<i16>) -> Result<(), AudioError> {
        let Some(st) = self.fft.as_mut() else {
            return Ok(());
        };
        if st.consumed == 0 {
            return Ok(());
        }
        if !st.pending.is_empty() {
            let o =
                st.r.process_partial(Some(&[&st.pending]), None)
                    .map_err(failed)?;
            st.tail.extend_from_slice(&o[0]);
            st.pending.clear();
        }
        let limit = st.delay + st.expected();
        // Flush the delay line with silence until every input sample has come out.
        while st.drained + (st.tail.len() as u64) < limit {
            let o = st.r.process_partial::<&[f32]>(None, None).map_err(failed)?;
            if o[0].is_empty() {
                break;
            }
            st.tail.extend_from_slice(&o[0]);
        }
        st.drain(limit, out);
        st.tail.clear();
        Ok(())
    }
}

/// Converts `input` from `from` Hz to `to` Hz. The output has `len × to / from` samples and is
/// aligned with the input (the resampler's delay is removed).
pub fn resample(input: &[i16], from: u32, to: u32) -> Result<Vec<i16>, AudioError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let mut r = StreamResampler::new(from, to)?;
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let mut out = Vec::with_capacity(expected);
    r.push(input, &mut out)?;
    r.finish(&mut out)?;
    Ok(out)
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

    /// Pushed in uneven pieces (none, one sample, less and more than a resampler call), the
    /// streaming resampler gives what the whole input gives at once.
    #[test]
    fn pushing_in_pieces_gives_the_whole_buffer_result() {
        for (from, to, n) in [
            (8000, 48000, 5_003),
            (44100, 8000, 44_101),
            (16000, 8000, 999),
            (48000, 16000, 3),
            (8000, 8000, 100),
        ] {
            let src = tone(from, 300.0, n);
            let whole = resample(&src, from, to).unwrap();
            assert_eq!(
                whole.len() as u64,
                n as u64 * u64::from(to) / u64::from(from)
            );
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            let mut rest = src.as_slice();
            for size in [0, 1, 700, 1024, 3000].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let take = (*size).min(rest.len());
                r.push(&rest[..take], &mut out).unwrap();
                rest = &rest[take..];
            }
            r.finish(&mut out).unwrap();
            assert_eq!(out, whole, "{from} → {to}, {n} samples");
        }
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
