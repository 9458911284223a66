//! The sklearn digits and a small CNN for them.
//!
//! Data: `sklearn_digits.safetensors` (1,797 images of 8x8, values 0..16 scaled to [0, 1],
//! labels 0-9). Split: a Fisher-Yates shuffle of the indices with SplitMix64 seeded by 0,
//! the first 1,437 for training and the last 360 for test; fixed whatever the training
//! seed, so every run is scored on the same images.
//!
//! Model (3x3 filters, so the filter matrices are real conv filters):
//! `conv1 [16,1,3,3] -> relu -> conv2 [32,16,3,3] -> relu -> maxpool 2 -> conv3 [32,32,3,3]
//! -> relu -> maxpool 2 -> fc [10,128]`. The inputs of conv2, conv3 and fc are the
//! activations that cross the link; with activation sparsity they go through
//! [`crate::activation::sparsify_ste`].

use crate::{Result, Sparsifier, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use std::path::Path;

/// Training and test images, `[n, 1, 8, 8]` f32, with labels.
pub struct Digits {
    pub train_x: Tensor,
    pub train_y: Tensor,
    pub test_x: Tensor,
    pub test_y: Tensor,
}

/// Images in the training split.
pub const TRAIN: usize = 1437;

/// SplitMix64: the seeded generator for the split, the initialisation and the batches.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

impl Digits {
    /// Loads and splits `sklearn_digits.safetensors`.
    pub fn load(path: &Path) -> Result<Digits> {
        let err = |reason: String| TrainError::Data {
            path: path.display().to_string(),
            reason,
        };
        let file = sparsewire_formats::input::InputFile::open(path)
            .and_then(|f| f.read_all())
            .map_err(|e| err(e.to_string()))?;
        let find = |name: &str| {
            file.tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| err(format!("no tensor {name:?}")))
        };
        let images = find("images_f32")?
            .to_f32_vec()
            .ok_or_else(|| err("images_f32 is not a float tensor".into()))?;
        let labels_t = find("labels")?;
        if labels_t.dtype != sparsewire_formats::Dtype::I32 {
            return Err(err(format!("labels are {}, expected I32", labels_t.dtype)));
        }
        let labels: Vec<u32> = labels_t
            .data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as u32)
            .collect();
        let n = labels.len();
        if images.len() != n * 64 || n <= TRAIN || labels.iter().any(|&l| l > 9) {
            return Err(err(format!(
                "expected 8x8 images with labels 0-9 and more than {TRAIN} of them; got {} values for {n} labels",
                images.len()
            )));
        }
        let mut idx: Vec<usize> = (0..n).collect();
        Rng::new(0).shuffle(&mut idx);
        let take = |ids: &[usize]| -> Result<(Tensor, Tensor)> {
            let x: Vec<f32> = ids
                .iter()
                .flat_map(|&i| images[i * 64..(i + 1) * 64].iter().copied())
                .collect();
            let y: Vec<u32> = ids.iter().map(|&i| labels[i]).collect();
            Ok((
                Tensor::from_vec(x, (ids.len(), 1, 8, 8), &Device::Cpu)?,
                Tensor::from_vec(y, ids.len(), &Device::Cpu)?,
            ))
        };
        let (train_x, train_y) = take(&idx[..TRAIN])?;
        let (test_x, test_y) = take(&idx[TRAIN..])?;
        Ok(Digits {
            train_x,
            train_y,
            test_x,
            test_y,
        })
    }
}

impl Digits {
    /// The last `n` training images held out as the scored split (in `test_x`/`test_y`),
    /// the rest kept for training: a validation split for choosing a configuration
    /// without looking at the test images. `n` must leave at least one training image.
    pub fn hold_out(&self, n: usize) -> Result<Digits> {
        let all = self.train_x.dim(0)?;
        if n == 0 || n >= all {
            return Err(TrainError::Config(format!(
                "validation {n} is outside 1..{all} (the training images)"
            )));
        }
        let keep = all - n;
        Ok(Digits {
            train_x: self.train_x.narrow(0, 0, keep)?,
            train_y: self.train_y.narrow(0, 0, keep)?,
            test_x: self.train_x.narrow(0, keep, n)?,
            test_y: self.train_y.narrow(0, keep, n)?,
        })
    }

    /// Images in the training split.
    pub fn train_len(&self) -> Result<usize> {
        Ok(self.train_x.dim(0)?)
    }

    /// The first `n` test images as pixel values 0..16 (`[n, 64]` row-major) and their
    /// labels: the few digits the demo carries.
    pub fn test_sample(&self, n: usize) -> Result<(Vec<u8>, Vec<u32>)> {
        let n = n.min(self.test_x.dim(0)?);
        let x: Vec<f32> = self.test_x.narrow(0, 0, n)?.flatten_all()?.to_vec1()?;
        let y: Vec<u32> = self.test_y.narrow(0, 0, n)?.to_vec1()?;
        Ok((x.iter().map(|v| (v * 16.0).round() as u8).collect(), y))
    }
}

/// Images of pixel values 0..16 (`[n, 64]`) as the network's input `[n, 1, 8, 8]`.
pub fn images(pixels: &[u8]) -> Result<Tensor> {
    let n = pixels.len() / 64;
    let v: Vec<f32> = pixels[..n * 64].iter().map(|&p| p as f32 / 16.0).collect();
    Ok(Tensor::from_vec(v, (n, 1, 8, 8), &Device::Cpu)?)
}

/// The CNN's parameters, by name, in a fixed order.
#[derive(Clone)]
pub struct Cnn {
    pub params: Vec<(String, Var)>,
}

/// The inputs one weight layer multiplies, `[tokens, cols]`.
#[derive(Debug, Clone)]
pub struct LayerInputs {
    /// The weight's name (`conv2.weight`).
    pub weight: String,
    pub x: Vec<f32>,
    pub tokens: usize,
    pub cols: usize,
}

/// What one forward pass sent over the link.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkBytes {
    /// Bytes of the crossing activations as sent (sparse when activation sparsity is on).
    pub sent: usize,
    /// The same activations dense, f32.
    pub dense: usize,
}

impl Cnn {
    /// He-uniform weights and zero biases from `seed`.
    pub fn new(seed: u64) -> Result<Cnn> {
        let mut rng = Rng::new(seed ^ 0x5eed);
        let mut params = Vec::new();
        let shapes: [(&str, &[usize]); 8] = [
            ("conv1.weight", &[16, 1, 3, 3]),
            ("conv1.bias", &[16]),
            ("conv2.weight", &[32, 16, 3, 3]),
            ("conv2.bias", &[32]),
            ("conv3.weight", &[32, 32, 3, 3]),
            ("conv3.bias", &[32]),
            ("fc.weight", &[10, 128]),
            ("fc.bias", &[10]),
        ];
        for (name, shape) in shapes {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = if name.ends_with("bias") {
                vec![0.0; n]
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let b = (6.0 / fan_in as f32).sqrt();
                (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * b).collect()
            };
            params.push((name.to_string(), Var::from_vec(v, shape, &Device::Cpu)?));
        }
        Ok(Cnn { params })
    }

    /// A copy with its own weights (a clone shares them).
    pub fn deep_copy(&self) -> Result<Cnn> {
        let params = self
            .params
            .iter()
            .map(|(n, v)| Ok((n.clone(), Var::from_tensor(&v.as_tensor().copy()?)?)))
            .collect::<Result<_>>()?;
        Ok(Cnn { params })
    }

    /// The network with the weights of `file` (a decoded `.swire` or safetensors with the
    /// names and shapes of [`Cnn::new`], any float dtype).
    pub fn from_file(file: &sparsewire_formats::TensorFile) -> Result<Cnn> {
        let template = Cnn::new(0)?;
        let mut params = Vec::with_capacity(template.params.len());
        for (name, v) in template.params {
            let t = file
                .tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| TrainError::NoSuchParameter {
                    name: name.clone(),
                    have: file
                        .tensors
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
            let values = t
                .to_f32_vec()
                .filter(|_| shape == v.dims())
                .ok_or_else(|| {
                    TrainError::Config(format!(
                        "{name}: {} {:?}, the network needs F32/F16/BF16 {:?}",
                        t.dtype,
                        t.shape,
                        v.dims()
                    ))
                })?;
            params.push((name, Var::from_vec(values, shape, &Device::Cpu)?));
        }
        Ok(Cnn { params })
    }

    /// Predicted digits for `x` (`[n, 1, 8, 8]`), every weight as given (no masks).
    pub fn predict(&self, x: &Tensor) -> Result<Vec<u32>> {
        let sp = Sparsifier::new(vec![])?;
        let (logits, _) = self.forward(x, &sp, None)?;
        Ok(logits.argmax(1)?.to_vec1()?)
    }

    fn var(&self, name: &str) -> &Var {
        &self
            .params
            .iter()
            .find(|p| p.0 == name)
            .expect("fixed names")
            .1
    }

    /// Logits `[batch, 10]` for `x` (`[batch, 1, 8, 8]`), the weights masked by `sp`, the
    /// crossing activations sparsified to `keep` when given.
    pub fn forward(
        &self,
        x: &Tensor,
        sp: &Sparsifier,
        keep: Option<f32>,
    ) -> Result<(Tensor, LinkBytes)> {
        let mut link = LinkBytes::default();
        let mut cross = |t: Tensor| -> Result<Tensor> {
            link.dense += t.elem_count() * 4;
            match keep {
                Some(k) if k < 1.0 => {
                    let (y, b) = crate::activation::sparsify_ste(&t, k)?;
                    link.sent += b;
                    Ok(y)
                }
                _ => {
                    link.sent += t.elem_count() * 4;
                    Ok(t)
                }
            }
        };
        let conv = |x: &Tensor, layer: &str| -> Result<Tensor> {
            let w = sp.weight(
                &format!("{layer}.weight"),
                self.var(&format!("{layer}.weight")),
            )?;
            let b = self
                .var(&format!("{layer}.bias"))
                .as_tensor()
                .reshape((1, (), 1, 1))?;
            Ok(x.conv2d(&w, 1, 1, 1, 1)?.broadcast_add(&b)?.relu()?)
        };
        let h = conv(x, "conv1")?;
        let h = conv(&cross(h)?, "conv2")?.max_pool2d(2)?;
        let h = conv(&cross(h)?, "conv3")?.max_pool2d(2)?;
        let h = cross(h.flatten_from(1)?)?;
        let w = sp.weight("fc.weight", self.var("fc.weight"))?;
        let logits = h
            .matmul(&w.t()?)?
            .broadcast_add(self.var("fc.bias").as_tensor())?;
        Ok((logits, link))
    }

    /// The inputs of every weight layer on `x` (`[n, 1, 8, 8]`), as the scorer and the
    /// calibrated criteria read them: a conv layer's inputs as 3x3 patches (zero padded; column `c * 9 + ky * 3 + kx`,
    /// the order of its flattened `[out, in, 3, 3]` weight), the classifier's as the
    /// flattened features. Every weight as given (no masks, no activation sparsity).
    pub fn layer_inputs(&self, x: &Tensor) -> Result<Vec<LayerInputs>> {
        let conv = |x: &Tensor, layer: &str| -> Result<Tensor> {
            let w = self.var(&format!("{layer}.weight")).as_tensor();
            let b = self
                .var(&format!("{layer}.bias"))
                .as_tensor()
                .reshape((1, (), 1, 1))?;
            Ok(x.conv2d(w, 1, 1, 1, 1)?.broadcast_add(&b)?.relu()?)
        };
        let mut out = Vec::with_capacity(4);
        let mut patches = |name: &str, t: &Tensor| -> Result<()> {
            let (tokens, cols, v) = im2col3x3(t)?;
            out.push(LayerInputs {
                weight: format!("{name}.weight"),
                x: v,
                tokens,
                cols,
            });
            Ok(())
        };
        patches("conv1", x)?;
        let h = conv(x, "conv1")?;
        patches("conv2", &h)?;
        let h = conv(&h, "conv2")?.max_pool2d(2)?;
        patches("conv3", &h)?;
        let h = conv(&h, "conv3")?.max_pool2d(2)?.flatten_from(1)?;
        let (n, f) = h.dims2()?;
        out.push(LayerInputs {
            weight: "fc.weight".into(),
            x: h.flatten_all()?.to_vec1()?,
            tokens: n,
            cols: f,
        });
        Ok(out)
    }

    /// Test accuracy in [0, 1], evaluated in batches.
    pub fn accuracy(
        &self,
        x: &Tensor,
        y: &Tensor,
        sp: &Sparsifier,
        keep: Option<f32>,
    ) -> Result<(f64, LinkBytes)> {
        let n = x.dim(0)?;
        let mut right = 0usize;
        let mut link = LinkBytes::default();
        for start in (0..n).step_by(256) {
            let len = 256.min(n - start);
            let (logits, l) = self.forward(&x.narrow(0, start, len)?, sp, keep)?;
            link.sent += l.sent;
            link.dense += l.dense;
            let pred = logits.argmax(1)?;
            let eq = pred.eq(&y.narrow(0, start, len)?)?.to_dtype(DType::F32)?;
            right += eq.sum_all()?.to_scalar::<f32>()? as usize;
        }
        Ok((right as f64 / n as f64, link))
    }
}

/// 3x3 patches of `[n, c, h, w]` with zero padding 1: `(n * h * w, c * 9, values)`.
fn im2col3x3(t: &Tensor) -> Result<(usize, usize, Vec<f32>)> {
    let (n, c, h, w) = t.dims4()?;
    let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
    let cols = c * 9;
    let mut out = vec![0f32; n * h * w * cols];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                let row = &mut out[((b * h + y) * w + x) * cols..][..cols];
                for ch in 0..c {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (sy, sx) = (y + ky, x + kx);
                            if sy >= 1 && sy <= h && sx >= 1 && sx <= w {
                                row[ch * 9 + ky * 3 + kx] =
                                    v[((b * c + ch) * h + sy - 1) * w + sx - 1];
                            }
                        }
                    }
                }
            }
        }
    }
    Ok((n * h * w, cols, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_out_scores_the_last_training_images_and_trains_on_the_rest() {
        let x: Vec<f32> = (0..10 * 64).map(|i| (i / 64) as f32).collect();
        let y: Vec<u32> = (0..10).collect();
        let d = Digits {
            train_x: Tensor::from_vec(x, (10, 1, 8, 8), &Device::Cpu).unwrap(),
            train_y: Tensor::from_vec(y, 10, &Device::Cpu).unwrap(),
            test_x: Tensor::zeros((2, 1, 8, 8), DType::F32, &Device::Cpu).unwrap(),
            test_y: Tensor::zeros(2, DType::U32, &Device::Cpu).unwrap(),
        };
        let v = d.hold_out(3).unwrap();
        assert_eq!(v.train_len().unwrap(), 7);
        assert_eq!(v.train_y.to_vec1::<u32>().unwrap(), [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(v.test_y.to_vec1::<u32>().unwrap(), [7, 8, 9]);
        let first: Vec<f32> = v
            .test_x
            .get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(first.iter().all(|&p| p == 7.0));
        assert!(d.hold_out(0).is_err() && d.hold_out(10).is_err());
    }

    #[test]
    fn layer_inputs_are_the_patches_each_conv_multiplies() {
        let cnn = Cnn::new(3).unwrap();
        let mut rng = Rng::new(9);
        let px: Vec<u8> = (0..3 * 64).map(|_| (rng.uniform() * 17.0) as u8).collect();
        let x = images(&px).unwrap();
        let inputs = cnn.layer_inputs(&x).unwrap();
        let names: Vec<&str> = inputs.iter().map(|i| i.weight.as_str()).collect();
        assert_eq!(
            names,
            ["conv1.weight", "conv2.weight", "conv3.weight", "fc.weight"]
        );
        // conv1 through the patches: X Wᵀ + b, relu, is candle's conv.
        let (p, tokens, cols) = (&inputs[0].x, &inputs[0].tokens, &inputs[0].cols);
        assert_eq!((*tokens, *cols), (3 * 64, 9));
        let w: Vec<f32> = cnn
            .var("conv1.weight")
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = cnn.var("conv1.bias").as_tensor().to_vec1().unwrap();
        let conv = x
            .conv2d(cnn.var("conv1.weight").as_tensor(), 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(
                &cnn.var("conv1.bias")
                    .as_tensor()
                    .reshape((1, (), 1, 1))
                    .unwrap(),
            )
            .unwrap();
        let want: Vec<f32> = conv.flatten_all().unwrap().to_vec1().unwrap();
        for t in 0..*tokens {
            let (img, pos) = (t / 64, t % 64);
            for o in 0..16 {
                let got: f32 = (0..9).map(|j| p[t * 9 + j] * w[o * 9 + j]).sum::<f32>() + b[o];
                let exp = want[(img * 16 + o) * 64 + pos];
                assert!(
                    (got - exp).abs() < 1e-4,
                    "token {t} out {o}: {got} vs {exp}"
                );
            }
        }
        assert_eq!((inputs[1].tokens, inputs[1].cols), (3 * 64, 144));
        assert_eq!((inputs[2].tokens, inputs[2].cols), (3 * 16, 288));
        assert_eq!((inputs[3].tokens, inputs[3].cols), (3, 128));
    }
}
