"""Instruction and preference data from a curated corpus (tools/build_sft_data.py, tools/generate_qa.py)."""
