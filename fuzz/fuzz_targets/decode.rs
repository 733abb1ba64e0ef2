//! Untrusted bytes through what a deposit and a playback do with them, under every Content-Type
//! hint: the streaming header probe (before and at the end of the body), the deposit's end-of-body
//! checks (the size against the header, the GSM frame check, or the validating decode of a
//! compressed format, `measure`), and the full decode to PCM (`decode_any`). Any panic aborts the
//! run (libfuzzer-sys's panic hook fires even inside the decoder's `catch_unwind`), so a crash
//! here is a panic, an overflow or an out-of-memory the code should have refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxmail::audio::{self, GsmFrameCheck, RawHint};
use voxmail::domain::AudioFormat;

const HINTS: [RawHint; 10] = [
    RawHint::Sniff,
    RawHint::Wav,
    RawHint::Compressed,
    RawHint::Ulaw,
    RawHint::Alaw,
    RawHint::Gsm,
    RawHint::Slin {
        rate: 8000,
        big_endian: false,
    },
    RawHint::Slin {
        rate: 16000,
        big_endian: false,
    },
    RawHint::Slin {
        rate: 8000,
        big_endian: true,
    },
    RawHint::Slin {
        rate: 16000,
        big_endian: true,
    },
];

fuzz_target!(|data: &[u8]| {
    for hint in HINTS {
        let _ = audio::probe(data, hint, false);
        if let Ok(Some(p)) = audio::probe(data, hint, true) {
            if p.format == AudioFormat::RawGsm {
                let _ = GsmFrameCheck::default().feed(data);
            }
            if p.format.is_compressed() {
                let _ = audio::measure(p.format, data, 600);
            } else {
                let _ = audio::finish(&p, data.len() as u64);
            }
        }
        let _ = audio::decode_any(data, hint);
    }
});
