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
    return Runtime(settings=settings, specs=with_endpoint_suffix(load_specs(models_dir), settings.endpoint_suffix))


def with_endpoint_suffix(specs: dict[str, ModelSpec], suffix: str | None) -> dict[str, ModelSpec]:
    """The specs with ``-<suffix>`` after each endpoint name (``PERENNIAL_ENDPOINT_SUFFIX``): Azure ML endpoint names
    are unique within a region, across tenants. Spec endpoints are at most ``ENDPOINT_NAME_MAX`` characters and the
    suffix at most ``ENDPOINT_SUFFIX_MAX``, so the result is a valid Azure ML name."""
    if suffix is None:
        return specs
    return {
        name: spec.model_copy(
            update={"rollout": spec.rollout.model_copy(update={"endpoint": f"{spec.endpoint_name}-{suffix}"})}
        )
        for name, spec in specs.items()
    }
