"""Pure, I/O-framework-free rules shared by the server and the Python client."""
