//! What a Vorbis stream's headers cost a decoder before any decoder sees them.
//!
//! A Vorbis decoder unpacks every codebook of the setup header into lookup tables: a vector table
//! of `entries × dimensions` floats and a Huffman table that grows with the number of long
//! codewords. Real encoders write setups that unpack to about 1–2 MiB, but the header sizes
//! nothing: a few bytes describe a codebook of 100,000 entries × 10 dimensions (4 MB of vectors
//! from three 1-bit multiplicands), and 256 of them fit in a 6 KB upload that would make the
//! decoder allocate gigabytes for minutes. [`check_setup`] walks the codebooks (the Vorbis I
//! specification, §3.2.1, §4.2.2), bounds what unpacking them takes, and refuses a setup past
//! [`MAX_SETUP_BYTES`].

use super::AudioError;

/// The most decoder memory a Vorbis setup may need (an upper bound of what the decoder would
/// allocate for its tables and buffers). Setups from libvorbis, at any rate, channel count and
/// quality, stay under a quarter of it.
pub const MAX_SETUP_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes of one entry of the decoder's Huffman lookup table (a 32-bit value, a length or jump).
const TABLE_ENTRY_BYTES: u64 = 8;
/// Widest lookup block of the decoder's Huffman tables, in bits.
const MAX_BLOCK_BITS: u32 = 8;
/// Floors, residues, mappings, modes and the decoder's fixed parts: small next to the rest.
const FIXED_BYTES: u64 = 64 * 1024;

fn bad(m: impl Into<String>) -> AudioError {
    AudioError::Corrupt(format!("damaged Ogg Vorbis: {}", m.into()))
}

/// Reads bits least significant first, as Vorbis packs them.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn read(&mut self, n: u32) -> Result<u32, AudioError> {
        let mut v = 0u32;
        for i in 0..n {
            let byte = self
                .data
                .get(self.pos / 8)
                .ok_or_else(|| bad("the setup header ends inside a codebook"))?;
            v |= u32::from((byte >> (self.pos % 8)) & 1) << i;
            self.pos += 1;
        }
        Ok(v)
    }

    /// Skips `n` bits, failing when fewer are left.
    fn skip(&mut self, n: u64) -> Result<(), AudioError> {
        let end = (self.pos as u64).saturating_add(n);
        if end > self.data.len() as u64 * 8 {
            return Err(bad("the setup header ends inside a codebook"));
        }
        self.pos = end as usize;
        Ok(())
    }
}

/// Bits needed to write `x` (the specification's `ilog`).
fn ilog(x: u32) -> u32 {
    32 - x.leading_zeros()
}

/// The largest `v` with `v^dimensions <= entries` (§9.2.3 `lookup1_values`), in integers.
fn lookup1_values(entries: u32, dimensions: u32) -> u32 {
    let fits = |v: u32| {
        v.checked_pow(dimensions)
            .is_some_and(|p| p <= entries.max(1))
    };
    let (mut lo, mut hi) = (0u32, entries.max(1));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// The most entries a codebook may have (the decoder refuses more).
const MAX_ENTRIES: u32 = 128 * 1024;

/// What one codebook costs once unpacked.
fn codebook(bits: &mut Bits<'_>) -> Result<u64, AudioError> {
    if bits.read(24)? != 0x56_4342 {
        return Err(bad("a codebook's sync pattern is missing"));
    }
    let dimensions = bits.read(16)?;
    let entries = bits.read(24)?;
    if entries > MAX_ENTRIES {
        return Err(bad("a codebook has too many entries"));
    }
    // The codeword length of each entry in entry order; 0 for an unused entry.
    let mut lengths: Vec<u8> = Vec::with_capacity(entries as usize);
    if bits.read(1)? == 1 {
        // Ordered: runs of codewords of increasing length.
        let mut length = bits.read(5)? + 1;
        while lengths.len() < entries as usize {
            let n = bits.read(ilog(entries - lengths.len() as u32))? as usize;
            if lengths.len() + n > entries as usize {
                return Err(bad("a codebook lists more codewords than entries"));
            }
            if n > 0 && length > 32 {
                return Err(bad("a codeword is longer than 32 bits"));
            }
            lengths.resize(lengths.len() + n, length as u8);
            length += 1;
        }
    } else {
        let sparse = bits.read(1)? == 1;
        for _ in 0..entries {
            let used = !sparse || bits.read(1)? == 1;
            lengths.push(if used { bits.read(5)? as u8 + 1 } else { 0 });
        }
    }
    let lookup = bits.read(4)?;
    let vectors = match lookup {
        0 => 0,
        1 | 2 => {
            bits.skip(64)?;
            let value_bits = bits.read(4)? + 1;
            bits.skip(1)?;
            let values = if lookup == 1 {
                u64::from(lookup1_values(entries, dimensions))
            } else {
                u64::from(entries) * u64::from(dimensions)
            };
            bits.skip(values * u64::from(value_bits))?;
            u64::from(entries) * u64::from(dimensions) * 4
        }
        _ => return Err(bad("a codebook has an unknown lookup type")),
    };
    // The Huffman table grows by doubling, so up to twice its length is reserved.
    let table = table_blocks(&lengths)? * TABLE_ENTRY_BYTES * 2;
    // The codeword lists the decoder builds on the way (a length, a value and a codeword each).
    let lists = u64::from(entries) * 9;
    Ok(vectors + table + lists)
}

/// Entries of the decoder's Huffman lookup table for codewords of these lengths: blocks of 2^w
/// entries (w = the longest codeword, clamped to 4..=8 bits), one at the root and one for every
/// distinct w-bit, 2w-bit… prefix of a longer codeword. Codewords are assigned as the
/// specification's §3.2.1 says: each entry takes the lowest free codeword of its length.
fn table_blocks(lengths: &[u8]) -> Result<u64, AudioError> {
    let longest = u32::from(lengths.iter().copied().max().unwrap_or(0));
    let w = longest.clamp(4, MAX_BLOCK_BITS);
    // Free codewords per length, left-aligned in 32 bits; 0 when none.
    let mut free = [0u32; 33];
    let mut first = true;
    // (depth, prefix) of every block below the root.
    let mut prefixes: Vec<u64> = Vec::new();
    for len in lengths.iter().map(|&l| u32::from(l)).filter(|&l| l > 0) {
        let code = if first {
            first = false;
            for (i, f) in free.iter_mut().enumerate().take(len as usize + 1).skip(1) {
                *f = 1u32 << (32 - i);
            }
            0
        } else {
            let mut z = len;
            while z > 0 && free[z as usize] == 0 {
                z -= 1;
            }
            if z == 0 {
                return Err(bad("a codebook has more codewords than fit"));
            }
            let code = free[z as usize];
            free[z as usize] = 0;
            for y in z + 1..=len {
                free[y as usize] = code + (1u32 << (32 - y));
            }
            code
        };
        let mut depth = w;
        while depth < len {
            prefixes.push((u64::from(depth) << 32) | u64::from(code >> (32 - depth)));
            depth += w;
        }
    }
    prefixes.sort_unstable();
    prefixes.dedup();
    Ok((1 + prefixes.len() as u64) << w)
}

/// Bounds what decoding a Vorbis stream with these headers takes, from the codec parameters'
/// extra data (the identification header followed by the setup header, as the Ogg demuxer hands
/// them over), and refuses a setup that would need more than [`MAX_SETUP_BYTES`].
pub fn check_setup(extra: &[u8]) -> Result<u64, AudioError> {
    const IDENT: usize = 30;
    let ident = extra
        .get(..IDENT)
        .filter(|h| h[0] == 1 && &h[1..7] == b"vorbis")
        .ok_or_else(|| bad("no identification header"))?;
    let channels = u64::from(ident[11]);
    let long_block = 1u64 << (ident[28] >> 4);
    let setup = &extra[IDENT..];
    if setup.len() < 7 || setup[0] != 5 || &setup[1..7] != b"vorbis" {
        return Err(bad("no setup header"));
    }
    let mut bits = Bits::new(&setup[7..]);
    let count = bits.read(8)? + 1;
    // Per channel: the floor, residue, overlap and transform buffers of a long block.
    let mut total = FIXED_BYTES + (channels + 1) * long_block * 16;
    for _ in 0..count {
        total = total.saturating_add(codebook(&mut bits)?);
        if total > MAX_SETUP_BYTES {
            return Err(AudioError::Unsupported(format!(
                "this Ogg Vorbis stream's setup header would need over {} MiB of decoder memory \
                 (real encoders need about 2 MiB): not accepted",
                MAX_SETUP_BYTES / (1024 * 1024)
            )));
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs bits least significant first.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn put(&mut self, v: u64, n: u32) -> &mut Self {
            for i in 0..n {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                if (v >> i) & 1 == 1 {
                    let last = self.bytes.len() - 1;
                    self.bytes[last] |= 1 << (self.bits % 8);
                }
                self.bits += 1;
            }
            self
        }

        fn into_bytes(self) -> Vec<u8> {
            self.bytes
        }
    }

    /// An identification header: mono, 8 kHz, blocks of 256 and 2048 samples.
    fn ident() -> Vec<u8> {
        let mut h = b"\x01vorbis".to_vec();
        h.extend_from_slice(&0u32.to_le_bytes());
        h.push(1);
        h.extend_from_slice(&8000u32.to_le_bytes());
        h.extend_from_slice(&[0; 12]);
        h.push((11 << 4) | 8);
        h.push(1);
        h
    }

    /// A setup header of `n` codebooks of 100,000 entries × 10 dimensions, each described in 23
    /// bytes (ordered lengths, a lookup of three 1-bit values): about 4 MB of vectors and a
    /// Huffman table of 34,465 blocks apiece once unpacked. Nothing follows the codebooks.
    fn codebook_bomb(n: u64) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(n - 1, 8);
        for _ in 0..n {
            w.put(0x56_4342, 24).put(10, 16).put(100_000, 24);
            // Ordered: 31,072 codewords of 16 bits and 68,928 of 17 (a complete code).
            w.put(1, 1).put(15, 5).put(31_072, 17).put(68_928, 17);
            w.put(1, 4).put(0, 64).put(0, 4).put(0, 1).put(0, 3);
        }
        let mut setup = b"\x05vorbis".to_vec();
        setup.extend(w.into_bytes());
        setup
    }

    /// A setup header of `n` small codebooks: 4 entries of 2 dimensions, densely listed codewords
    /// of 2 bits, a lookup of two 1-bit values.
    fn small_codebooks(n: u64) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(n - 1, 8);
        for _ in 0..n {
            w.put(0x56_4342, 24).put(2, 16).put(4, 24);
            w.put(0, 1).put(0, 1);
            for _ in 0..4 {
                w.put(1, 5);
            }
            w.put(1, 4).put(0, 64).put(0, 4).put(0, 1).put(0b10, 2);
        }
        let mut setup = b"\x05vorbis".to_vec();
        setup.extend(w.into_bytes());
        setup
    }

    #[test]
    fn lookup1_values_is_the_integer_root() {
        assert_eq!(lookup1_values(100_000, 10), 3);
        assert_eq!(lookup1_values(81, 4), 3);
        assert_eq!(lookup1_values(80, 4), 2);
        assert_eq!(lookup1_values(131_072, 32), 1);
        assert_eq!(lookup1_values(131_072, 17), 2);
        assert_eq!(lookup1_values(0, 3), 1);
    }

    #[test]
    fn a_small_setup_costs_its_tables_and_buffers() {
        let mut h = ident();
        h.extend(small_codebooks(3));
        // Per codebook: 4 × 2 floats, one 16-entry table block reserved twice over, 4 × 9 bytes
        // of lists; then the fixed part and two long blocks (one channel and the transform).
        let book = 4 * 2 * 4 + 16 * 8 * 2 + 4 * 9;
        assert_eq!(
            check_setup(&h).unwrap(),
            3 * book + FIXED_BYTES + 2 * 2048 * 16
        );
    }

    #[test]
    fn a_codebook_bomb_is_refused_before_any_decoder_sees_it() {
        // One bomb codebook alone: 4 MB of vectors, 34,465 table blocks of 2 KiB.
        let mut bomb = ident();
        bomb.extend(codebook_bomb(1));
        let e = check_setup(&bomb).unwrap_err();
        assert!(
            matches!(&e, AudioError::Unsupported(m) if m.contains("decoder memory")),
            "{e:?}"
        );
    }

    #[test]
    fn damaged_setups_are_refused() {
        let whole = small_codebooks(3);
        let mut short = ident();
        short.extend(&whole[..whole.len() - 4]);
        assert!(matches!(check_setup(&short), Err(AudioError::Corrupt(_))));
        let mut unsynced = ident();
        unsynced.extend(&whole);
        unsynced[30 + 8] ^= 1;
        assert!(matches!(
            check_setup(&unsynced),
            Err(AudioError::Corrupt(_))
        ));
        assert!(check_setup(b"\x01vorbis").is_err());
        let mut no_setup = ident();
        no_setup.extend_from_slice(b"\x03vorbis");
        assert!(check_setup(&no_setup).is_err());
    }
}
