//! The preallocated key/value cache of a batch.
//!
//! Every sequence of the batch shares the same column timeline: a forward pass of `T` new tokens
//! writes columns `len..len + T` of every layer for every row. Rows that have nothing to add in a
//! step leave holes there, which the caller masks out through the attention bias (see
//! `research-engine`). This keeps every write a single contiguous slice assignment.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorCreationOptions};

use crate::config::Qwen2Config;
use crate::weights::FloatType;

/// Keys and values of every layer, `[batch, kv_heads, capacity, head_dim]` each.
pub struct KvCache<B: Backend> {
    keys: Vec<Option<Tensor<B, 4>>>,
    values: Vec<Option<Tensor<B, 4>>>,
    len: usize,
    capacity: usize,
    batch: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `batch` rows and `capacity` columns.
    pub fn new(config: &Qwen2Config, batch: usize, capacity: usize, dtype: FloatType, device: &B::Device) -> Self {
        let shape = [batch, config.num_key_value_heads, capacity, config.head_dim];
        let opts = || TensorCreationOptions::<B>::new(device.clone()).with_dtype(dtype.dtype());
        let n = config.num_hidden_layers;
        Self {
            keys: (0..n).map(|_| Some(Tensor::zeros(shape, opts()))).collect(),
            values: (0..n).map(|_| Some(Tensor::zeros(shape, opts()))).collect(),
            len: 0,
            capacity,
            batch,
        }
    }

    /// Columns written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Columns available in total.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Rows.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Enlarges every layer to at least `capacity` columns, keeping what is cached.
    pub fn reserve(&mut self, capacity: usize) {
        if capacity <= self.capacity {
            return;
        }
        let extra = capacity - self.capacity;
        for slot in self.keys.iter_mut().chain(self.values.iter_mut()) {
            let t = slot.take().expect("cache slot");
            let [b, h, _, d] = t.dims();
            let pad = Tensor::zeros(
                [b, h, extra, d],
                TensorCreationOptions::new(t.device()).with_dtype(t.dtype()),
            );
            *slot = Some(Tensor::cat(vec![t, pad], 2));
        }
        self.capacity = capacity;
    }

    /// Writes `k`, `v` (`[batch, kv_heads, T, head_dim]`) at columns `len..len + T` of `layer` and
    /// returns views of columns `0..len + T`. [`KvCache::advance`] moves `len` once all layers ran.
    pub fn append(&mut self, layer: usize, k: Tensor<B, 4>, v: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [b, h, t, d] = k.dims();
        let end = self.len + t;
        assert!(
            end <= self.capacity,
            "KV cache overflow: {end} > {} columns",
            self.capacity
        );
        let range = [0..b, 0..h, self.len..end, 0..d];
        let keys = self.keys[layer]
            .take()
            .expect("cache slot")
            .slice_assign(range.clone(), k);
        let values = self.values[layer].take().expect("cache slot").slice_assign(range, v);
        let out = (keys.clone().narrow(2, 0, end), values.clone().narrow(2, 0, end));
        self.keys[layer] = Some(keys);
        self.values[layer] = Some(values);
        out
    }

    /// Marks `t` more columns as written.
    pub fn advance(&mut self, t: usize) {
        self.len += t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::TensorData;

    type B = NdArray<f32>;

    fn config() -> Qwen2Config {
        Qwen2Config::from_json_str(
            r#"{"vocab_size": 8, "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 2,
                "num_attention_heads": 2, "num_key_value_heads": 1}"#,
            std::path::Path::new("test"),
        )
        .unwrap()
    }

    fn block(start: f32, t: usize) -> Tensor<B, 4> {
        let v: Vec<f32> = (0..t * 2).map(|i| start + i as f32).collect();
        Tensor::from_data(TensorData::new(v, [1, 1, t, 2]), &Default::default())
    }

    #[test]
    fn append_writes_columns_and_reserve_keeps_them() {
        let mut c = KvCache::<B>::new(&config(), 1, 3, FloatType::F32, &Default::default());
        for layer in 0..2 {
            let (k, _) = c.append(layer, block(0.0, 2), block(100.0, 2));
            assert_eq!(k.dims(), [1, 1, 2, 2]);
        }
        c.advance(2);
        c.reserve(6);
        assert_eq!(c.capacity(), 6);
        let (k, v) = c.append(0, block(10.0, 3), block(110.0, 3));
        let k: Vec<f32> = k.into_data().to_vec().unwrap();
        let v: Vec<f32> = v.into_data().to_vec().unwrap();
        assert_eq!(k, vec![0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]);
        assert_eq!(v[..4], [100.0, 101.0, 102.0, 103.0]);
    }
}
