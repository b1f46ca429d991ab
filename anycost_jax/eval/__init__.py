"""Evaluation metrics: FID of (sub-)generators (:mod:`anycost_jax.eval.fid`)."""
from anycost_jax.eval.fid import (FeatureExtractor, FIDStats, default_batch_size, fake_features,  # noqa: F401
                                  fid_for_configs, frechet_distance, load_stats, real_stats, sample_latents)
