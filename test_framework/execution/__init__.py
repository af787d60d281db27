"""Execution: worker processes, the child protocol, and one shard's lifecycle."""
