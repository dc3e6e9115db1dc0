//! Picks the next token: greedy, or temperature with optional top-k / top-p, after an
//! optional repetition penalty over the most recent tokens; seeded, so reproducible.

use candle_core::{Result, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::utils::apply_repeat_penalty;

use crate::request::SamplingParams;

pub struct Sampler {
    processor: LogitsProcessor,
    repetition_penalty: f32,
    repeat_last_n: usize,
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Self {
        let temperature = params.temperature;
        let sampling = if temperature <= 0.0 || !temperature.is_finite() {
            Sampling::ArgMax
        } else {
            match (params.top_k, params.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(params.seed, sampling),
            repetition_penalty: params.repetition_penalty,
            repeat_last_n: params.repeat_last_n,
        }
    }

    /// `logits` `(vocab,)`; `history` is every token of the conversation so far.
    pub fn sample(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let penalised;
        let logits = if self.repetition_penalty != 1.0 && self.repeat_last_n > 0 {
            let start = history.len().saturating_sub(self.repeat_last_n);
            penalised = apply_repeat_penalty(logits, self.repetition_penalty, &history[start..])?;
            &penalised
        } else {
            logits
        };
        self.processor.sample(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(values: &[f32]) -> Tensor {
        Tensor::new(values, &Device::Cpu).expect("tensor")
    }

    #[test]
    fn greedy_takes_the_largest_logit() {
        let mut sampler = Sampler::new(&SamplingParams::default());
        assert_eq!(
            sampler
                .sample(&logits(&[0.1, 3.0, 2.0]), &[])
                .expect("sample"),
            1
        );
    }

    #[test]
    fn repetition_penalty_demotes_recent_tokens() {
        let params = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::default()
        };
        let mut sampler = Sampler::new(&params);
        assert_eq!(
            sampler
                .sample(&logits(&[0.1, 3.0, 2.0]), &[1])
                .expect("sample"),
            2
        );
        // Outside the window the penalty no longer applies.
        let params = SamplingParams {
            repeat_last_n: 1,
            ..params
        };
        let mut sampler = Sampler::new(&params);
        assert_eq!(
            sampler
                .sample(&logits(&[0.1, 3.0, 2.0]), &[1, 0])
                .expect("sample"),
            1
        );
    }

    #[test]
    fn same_seed_same_samples_and_top_k_one_is_greedy() {
        let params = SamplingParams {
            temperature: 1.0,
            seed: 7,
            ..SamplingParams::default()
        };
        let values: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |params: &SamplingParams| -> Vec<u32> {
            let mut sampler = Sampler::new(params);
            (0..20)
                .map(|_| sampler.sample(&logits(&values), &[]).expect("sample"))
                .collect()
        };
        assert_eq!(run(&params), run(&params));
        let top1 = SamplingParams {
            top_k: Some(1),
            ..params
        };
        let argmax = values
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .expect("max");
        assert!(run(&top1).iter().all(|&t| t == argmax));
    }
}
