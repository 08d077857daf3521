"""Evaluation of what railguard serves: the assistant (IFEval, our held-out prompts, refusals)."""
