"""Code that runs ON the Azure ML compute. Self-contained: imports nothing from shared/ or functions/."""
