"""What the app loads once per process: settings and model specs, validated together at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


#: The app's root (where function_app.py lives). Azure starts the worker with another working
#: directory, so a relative PERENNIAL_MODELS_DIR is resolved against this, not the cwd.
APP_ROOT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    """Load settings and every spec under the models directory (raises SettingsError / SpecError)."""
    settings = load_settings()
    models_dir = settings.models_dir if settings.models_dir.is_absolute() else APP_ROOT / settings.models_dir
    return Runtime(settings=settings, specs=load_specs(models_dir))
