"""Small services of the project that run inside stock images (delivered by upload)."""
