"""Tests of pipeline/generate (moved with their modules in the redesign)."""
