"""Tests of pipeline/config (moved with their modules in the redesign)."""
