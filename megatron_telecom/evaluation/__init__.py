"""Evaluation: held-out perplexity and TeleQnA multiple-choice scoring."""
