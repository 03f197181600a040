"""What the app loads once per process: settings and model specs, validated together at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from shared.settings import Settings, load_settings
from shared.spec import ModelSpec, load_specs


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    specs: dict[str, ModelSpec]

    def spec(self, model: str) -> ModelSpec:
        """The spec of ``model``; KeyError names the known models."""
        try:
            return self.specs[model]
        except KeyError:
            raise KeyError(
                f"unknown model {model!r}; known models: {', '.join(sorted(self.specs)) or 'none'}"
            ) from None


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """Load settings and every spec under the models directory (raises SettingsError / SpecError)."""
    settings = load_settings()
    return Runtime(settings=settings, specs=load_specs(settings.models_dir))
