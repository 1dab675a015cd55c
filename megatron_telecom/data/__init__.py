"""Data: tokenizers, sentence splitting, indexed-dataset writing, blends and corpus curation."""
