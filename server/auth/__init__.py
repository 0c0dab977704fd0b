"""Who is asking: argon2 passwords, device bearer tokens, and HMAC-signed single-purpose URLs."""
