"""Augmentation: geometric, registration-based and generative; each produces cases in the standard layout."""
