"""Shared fixtures: tiny GGUF models of each architecture and type, and the real model."""
import pytest

from slmprof import registry


@pytest.fixture(scope="session")
def real_model_path():
    """Path of the downloaded SmolLM2-135M Q4_1 file; skips (with the reason) when absent."""
    path = registry.real_model_path()
    if not path.exists():
        pytest.skip(f"real model not downloaded ({path} missing; "
                    f"run `python -m slmprof models --fetch smollm2-135m`)")
    return path
