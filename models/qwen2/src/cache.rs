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
