//! Shared entropy models: plane histograms summed over a tensor, the models fitted to
//! them (stored once in the header), and the decoder tables built from those.

use crate::rans::{DecodeTable, Model};
use crate::{CodecError, Kernel, PlaneLayout};

/// Symbol histograms of the planes of some values; summed over a tensor to fit its models.
#[derive(Debug, Clone)]
pub struct PlaneHistograms {
    layout: PlaneLayout,
    head: Vec<u64>,
    bytes: Vec<Vec<u64>>,
}

impl PlaneHistograms {
    pub fn new(layout: PlaneLayout) -> Self {
        PlaneHistograms {
            layout,
            head: vec![0; 1 << layout.head_bits],
            bytes: vec![vec![0; 256]; layout.byte_planes],
        }
    }

    /// Adds little-endian values (`values.len()` a multiple of the value size), split a
    /// few thousand at a time into buffers on the stack: nothing tensor-sized.
    pub fn add(&mut self, values: &[u8]) {
        const STEP: usize = 4096;
        let l = self.layout;
        let mut head = [0u16; STEP];
        let mut bytes = [[0u8; STEP]; 2];
        let mut head_counts = Counter::new(self.head.len());
        let mut byte_counts: Vec<Counter> = (0..l.byte_planes).map(|_| Counter::new(256)).collect();
        for chunk in values.chunks(STEP * l.value_bytes) {
            let n = chunk.len() / l.value_bytes;
            let [b0, b1] = &mut bytes;
            let (b0, b1) = match l.byte_planes {
                2 => (&mut b0[..n], &mut b1[..n]),
                1 => (&mut b0[..n], &mut b1[..0]),
                _ => (&mut b0[..0], &mut b1[..0]),
            };
            crate::planes::split_into(l, chunk, &mut head[..n], &mut [], b0, b1);
            head_counts.add(&head[..n]);
            for (c, b) in byte_counts.iter_mut().zip(&bytes) {
                c.add(&b[..n]);
            }
        }
        head_counts.finish(&mut self.head);
        for (c, h) in byte_counts.iter_mut().zip(&mut self.bytes) {
            c.finish(h);
        }
    }

    /// The head plane's counts.
    pub(crate) fn head(&self) -> &[u64] {
        &self.head
    }

    /// Byte plane `k`'s counts.
    pub(crate) fn byte_plane(&self, k: usize) -> &[u64] {
        &self.bytes[k]
    }

    /// The layout counted.
    pub fn layout(&self) -> PlaneLayout {
        self.layout
    }

    /// Adds another histogram of the same layout.
    pub fn merge(mut self, other: &PlaneHistograms) -> Self {
        for (a, b) in self.head.iter_mut().zip(&other.head) {
            *a += b;
        }
        for (ha, hb) in self.bytes.iter_mut().zip(&other.bytes) {
            for (a, b) in ha.iter_mut().zip(hb) {
                *a += b;
            }
        }
        self
    }
}

/// Inputs up to this many symbols are counted without sub-histograms.
const SHORT_HISTOGRAM: usize = 1024;

/// Symbol counts. Four interleaved sub-histograms: runs of one symbol (common in a head
/// plane) would otherwise serialise on a single counter through memory.
///
/// A short input is counted straight into the totals: the sub-histograms' allocation and
/// their sum cost more than the chained increments they avoid (a tiny tile's 2048-symbol
/// head counted 80 KiB of zeroed arrays for a few dozen values).
pub(crate) fn histogram<S: Copy + Into<u32>>(symbols: &[S], alphabet: usize) -> Vec<u64> {
    let mut total = vec![0u64; alphabet];
    if symbols.len() <= SHORT_HISTOGRAM {
        for &s in symbols {
            total[s.into() as usize] += 1;
        }
        return total;
    }
    let mut c = Counter::new(alphabet);
    c.add(symbols);
    c.finish(&mut total);
    total
}

/// Four interleaved sub-histograms of `u32` counters, moved to `u64` totals before they
/// could overflow.
pub(crate) struct Counter {
    sub: Vec<[u32; 4]>,
    total: Vec<u64>,
    /// Symbols counted in `sub` since it was last moved to `total`.
    pending: usize,
}

impl Counter {
    pub(crate) fn new(alphabet: usize) -> Self {
        Counter {
            sub: vec![[0; 4]; alphabet],
            total: vec![0; alphabet],
            pending: 0,
        }
    }

    /// Counts `symbols` (each below the alphabet).
    pub(crate) fn add<S: Copy + Into<u32>>(&mut self, symbols: &[S]) {
        for block in symbols.chunks(1 << 30) {
            if self.pending + block.len() > u32::MAX as usize {
                self.flush();
            }
            let sub = &mut self.sub;
            let mut quads = block.chunks_exact(4);
            for q in &mut quads {
                sub[q[0].into() as usize][0] += 1;
                sub[q[1].into() as usize][1] += 1;
                sub[q[2].into() as usize][2] += 1;
                sub[q[3].into() as usize][3] += 1;
            }
            for &s in quads.remainder() {
                sub[s.into() as usize][0] += 1;
            }
            self.pending += block.len();
        }
    }

    fn flush(&mut self) {
        for (t, s) in self.total.iter_mut().zip(self.sub.iter_mut()) {
            *t += s.iter().map(|&c| c as u64).sum::<u64>();
            *s = [0; 4];
        }
        self.pending = 0;
    }

    /// Adds the counts to `total` and resets them.
    pub(crate) fn finish(&mut self, total: &mut [u64]) {
        self.flush();
        for (t, c) in total.iter_mut().zip(self.total.iter_mut()) {
            *t += *c;
            *c = 0;
        }
    }
}

#[inline]
pub(crate) fn load(v: &[u8]) -> u32 {
    match v.len() {
        2 => u16::from_le_bytes([v[0], v[1]]) as u32,
        _ => u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
    }
}

/// The entropy models a tensor's tiles share: the head's and each byte plane's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorModels {
    /// Index 0 the head, `1 + k` byte plane `k`; `None` where a plane is constant.
    pub models: Vec<Option<Model>>,
}

impl TensorModels {
    /// Fits the models on a tensor's histograms.
    pub fn fit(h: &PlaneHistograms) -> Self {
        let mut models = vec![Model::from_counts(&h.head)];
        models.extend(h.bytes.iter().map(|b| Model::from_counts(b)));
        TensorModels { models }
    }

    /// Serialised form for the header (`TensorMeta::models`); an empty entry is no model.
    pub fn to_bytes(&self) -> Vec<Vec<u8>> {
        self.models
            .iter()
            .map(|m| m.as_ref().map(Model::to_bytes).unwrap_or_default())
            .collect()
    }

    /// Parses models from the header.
    pub fn from_bytes(models: &[Vec<u8>]) -> Result<Self, CodecError> {
        let models = models
            .iter()
            .map(|b| {
                if b.is_empty() {
                    return Ok(None);
                }
                let (m, used) = Model::from_bytes(b)?;
                if used != b.len() {
                    return Err(CodecError::BadModel {
                        reason: "trailing bytes after the model",
                    });
                }
                Ok(Some(m))
            })
            .collect::<Result<_, _>>()?;
        Ok(TensorModels { models })
    }

    /// Builds the decode tables once, for all tiles of the tensor, decoding with the
    /// kernel [`Kernel::chosen`] picked.
    pub fn decoder(&self) -> TensorDecoder {
        self.decoder_with(Kernel::chosen())
    }

    /// [`TensorModels::decoder`] with a given kernel (the scalar code where the CPU does
    /// not have it).
    pub fn decoder_with(&self, kernel: Kernel) -> TensorDecoder {
        TensorDecoder {
            tables: self
                .models
                .iter()
                .map(|m| m.as_ref().map(Model::decode_table))
                .collect(),
            kernel: if kernel.available() {
                kernel
            } else {
                Kernel::Scalar
            },
        }
    }

    /// The model with this id, if present.
    pub fn get(&self, id: u16) -> Option<&Model> {
        self.models.get(id as usize).and_then(Option::as_ref)
    }
}

/// Decode tables of a tensor's shared models.
#[derive(Debug, Clone)]
pub struct TensorDecoder {
    tables: Vec<Option<DecodeTable>>,
    /// The kernel every tile of the tensor decodes with.
    pub(crate) kernel: Kernel,
}

impl TensorDecoder {
    /// The table of shared model `model`; an error when the header has no such model.
    pub(crate) fn table(&self, model: u16) -> Result<&DecodeTable, CodecError> {
        self.tables
            .get(model as usize)
            .and_then(Option::as_ref)
            .ok_or(CodecError::MissingModel { model })
    }

    /// The kernel this decoder runs.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }
}

/// Order-0 entropy of a histogram, in bits (total over all its symbols).
pub fn entropy_bits(hist: &[u64]) -> f64 {
    let n: u64 = hist.iter().sum();
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64) * (c as f64 / n as f64).log2())
        .sum()
}
