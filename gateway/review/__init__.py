"""The review queue: flagged records in, people's labels, agreement and adjudication out (docs/review.md)."""
