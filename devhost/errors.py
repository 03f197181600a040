"""Typed errors raised by devhost; each one says what to do about it."""

from __future__ import annotations


class DevHostError(RuntimeError):
    """Base class: ``str(err)`` is the problem, ``err.hint`` is the fix."""

    def __init__(self, message: str, hint: str) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})")


class AppLoadError(DevHostError):
    """The Functions app could not be imported or indexed."""


class ConfigError(DevHostError):
    """A devhost option or setting is wrong."""


class UnknownFunctionError(DevHostError):
    """An orchestration or activity names a function the app does not define."""


class NonDeterminismError(DevHostError):
    """A replayed orchestrator produced actions that do not match its recorded history, or that Azure's host
    would not replay as the SDK does (a task_any/task_all that re-uses a scheduled task)."""


class UnsupportedActionError(DevHostError):
    """The orchestrator used a Durable feature devhost does not implement (entities, call_http)."""
