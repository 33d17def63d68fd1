"""Exports of stored trajectories to the formats trainers and agent tools read: chat (OpenAI
fine-tuning / TRL), ShareGPT (LLaMA-Factory, axolotl), ATIF v1.4 (Harbor) and Parquet (datasets,
pandas, DuckDB), with filters, dedup, a task-level train/validation split and a dataset card.
Pure transformations and files; `adp export` (app/commands/export.py) reads the sources."""
