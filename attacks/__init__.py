"""Poisoning and inference attacks against secagg pipelines (see the issues for what lands here)."""
