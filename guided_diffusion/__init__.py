"""Classifier-guided diffusion: a from-scratch, checkpoint-compatible re-implementation."""
