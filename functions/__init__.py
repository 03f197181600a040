"""Thin trigger adapters: parse the trigger, call shared/, return. One df.Blueprint per concern."""
