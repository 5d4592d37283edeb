"""Tests of pipeline/engine (moved with their modules in the redesign)."""
