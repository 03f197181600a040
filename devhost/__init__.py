"""A local stand-in for the Azure Functions host and Event Grid. Imported by nothing in the app."""
