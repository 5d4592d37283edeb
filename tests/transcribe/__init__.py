"""Tests of pipeline/transcribe (moved with their modules in the redesign)."""
