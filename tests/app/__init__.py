"""Tests of pipeline/app (moved with their modules in the redesign)."""
