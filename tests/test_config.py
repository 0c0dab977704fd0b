"""Settings: one table in server/config.py, mirrored in the README; env and flags both work."""

from __future__ import annotations

from pathlib import Path

from server.config import SETTINGS, Config

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme():
    missing = [s.env for s in SETTINGS if f"`{s.env}`" not in README]
    assert not missing, f"document these in README.md's configuration table: {missing}"


def test_env_then_flags(tmp_path):
    cfg = Config.from_env({"SATCHEL_PORT": "9000", "SATCHEL_URL_TTL": "2m", "SATCHEL_MAX_FILE_SIZE": "1GiB",
                           "SATCHEL_SIGNUP": "false", "SATCHEL_DATA_DIR": str(tmp_path)}, port=9100)
    assert cfg.port == 9100 and cfg.url_ttl == 120 and cfg.max_file_size == 1024**3 and cfg.signup is False
    derived = cfg.with_derived()
    assert derived.database_url.startswith("sqlite+aiosqlite:///") and derived.blob_url.startswith("file://")
    assert len(derived.secret_key) > 40
    assert derived.with_derived().secret_key == derived.secret_key  # persisted, stable across restarts
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0
    assert "secret" not in repr(derived).lower() or derived.secret_key not in repr(derived)
