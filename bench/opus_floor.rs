//! The Rust floor of `bench/transcode.sh`: voxmail's own Opus encoder (`voxmail-codecs`, i.e.
//! unsafe-libopus, libopus 1.3.1 in Rust) over 8 kHz mono 16-bit PCM, with the settings of the
//! Ogg Opus renditions (VOIP, 40 ms frames, complexity 8 = `audio.opus_complexity`'s default,
//! input padded by the lookahead) and no container. Also times voxmail's whole in-process
//! transcode of a file, for comparison.
//!
//! ```text
//! cargo bench --bench opus_floor --no-run    # then run the executable it names:
//! opus_floor pcm PCM.s16le [REPEAT] [BITRATE] [COMPLEXITY]   raw encode loop (opus_floor.c in Rust)
//! opus_floor voxmail FILE [REPEAT] [BITRATE] [COMPLEXITY]    probe + voxmail::audio::transcode
//! ```
//!
//! Prints one line like `bench/opus_floor.c`: packets, bytes, an FNV-1a hash of the packets (the
//! C program prints the same hash when both libraries produce the same bits) and the median and
//! minimum time of one whole encode (encoder creation included) over REPEAT runs.

use std::error::Error;
use std::time::Instant;

use voxmail::audio::{self, OutputFormat, Rendition};
use voxmail_codecs::OpusEncoder;

const FRAME: usize = 320;

/// What one encode produced.
struct Encoded {
    packets: usize,
    bytes: usize,
    fnv: u64,
}

fn encode_pcm(pcm: &[i16], bitrate: i32, complexity: u8) -> Result<Encoded, Box<dyn Error>> {
    let mut enc = OpusEncoder::new(8000, bitrate, i32::from(complexity))?;
    let lookahead = enc.lookahead()? as usize;
    let frames = (pcm.len() + lookahead).div_ceil(FRAME).max(1);
    let mut frame = [0i16; FRAME];
    let mut packet = [0u8; 4000];
    let mut out = Encoded {
        packets: 0,
        bytes: 0,
        fnv: 0xcbf2_9ce4_8422_2325,
    };
    for i in 0..frames {
        let start = (i * FRAME).min(pcm.len());
        let end = ((i + 1) * FRAME).min(pcm.len());
        frame.fill(0);
        frame[..end - start].copy_from_slice(&pcm[start..end]);
        let n = enc.encode(&frame, &mut packet)?;
        for &b in &packet[..n] {
            out.fnv = (out.fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        out.packets += 1;
        out.bytes += n;
    }
    Ok(out)
}

fn transcode_file(bytes: &[u8], bitrate: u32, complexity: u8) -> Result<Encoded, Box<dyn Error>> {
    let probe = audio::probe(bytes, audio::RawHint::Sniff, true)?
        .ok_or("the recording could not be recognised")?;
    let r = Rendition::new(OutputFormat::Opus, None, Some(bitrate), bitrate, complexity)?;
    let ogg = audio::transcode(probe.format, bytes, &r)?;
    Ok(Encoded {
        packets: 0,
        bytes: ogg.len(),
        fnv: 0,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    // `cargo bench` passes `--bench`; anything starting with `--` is ignored.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(mode), Some(path)) = (args.first(), args.get(1)) else {
        return Err("usage: opus_floor pcm|voxmail FILE [REPEAT] [BITRATE] [COMPLEXITY]".into());
    };
    let repeat: usize = args.get(2).map_or(Ok(1), |s| s.parse())?.max(1);
    let bitrate: u32 = args.get(3).map_or(Ok(16000), |s| s.parse())?;
    let complexity: u8 = args.get(4).map_or(Ok(8), |s| s.parse())?;
    let bytes = std::fs::read(path)?;
    let pcm: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut times = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let t0 = Instant::now();
        let e = match mode.as_str() {
            "pcm" => encode_pcm(&pcm, i32::try_from(bitrate)?, complexity)?,
            "voxmail" => transcode_file(&bytes, bitrate, complexity)?,
            other => return Err(format!("unknown mode {other:?}: pcm or voxmail").into()),
        };
        times.push(t0.elapsed().as_secs_f64() * 1e6);
        last = Some(e);
    }
    let e = last.ok_or("no run")?;
    times.sort_by(f64::total_cmp);
    println!(
        "packets={} bytes={} fnv={:016x} median_us={:.0} min_us={:.0} runs={}",
        e.packets,
        e.bytes,
        e.fnv,
        times[times.len() / 2],
        times[0],
        repeat
    );
    Ok(())
}
