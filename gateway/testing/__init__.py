"""Test doubles shipped with railguard, for tests and benchmarks of your own deployment too."""
