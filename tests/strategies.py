"""Hypothesis strategies for the models: the invariant kit's own (``loadtest_core.testing``)."""

from __future__ import annotations

from loadtest_core.testing import models

ALL = models()
