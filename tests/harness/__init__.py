"""Real external services (S3, ...) started as subprocesses for tests."""
