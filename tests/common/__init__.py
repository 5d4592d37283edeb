"""Tests of pipeline/common (moved with their modules in the redesign)."""
