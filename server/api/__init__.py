"""HTTP routes: parse the request, call a service, render JSON; errors as ``{"error", "message"}``."""
