"""The server's secrets on a real `examsync serve` (issue 15, defect 7): the data dir is this
user's only, the admin token is printed only when the server made it, and a short one is
refused at start."""

from __future__ import annotations

import stat
from pathlib import Path

from .conftest import ServerProcess, examsync, start_server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_what_it_holds_are_private(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    # no Redis URL: the private redis-server's dir (its AOF holds answers) is checked too
    server = start_server(data, None, env={"EXAMSYNC_ADMIN_TOKEN": ""})
    servers.append(server)
    assert server.admin("GET", "/api/v1/keys").status_code == 200
    for directory in ("files", "receipt_keys", "redis"):
        assert mode(data / directory) == 0o700, directory
    sqlite = data / "examsync.sqlite3"
    for path in (sqlite, sqlite.with_name(sqlite.name + "-wal"), data / "admin_token"):
        assert path.exists() and mode(path) == 0o600, path
    assert all(mode(key) == 0o600 for key in (data / "receipt_keys").glob("*.pem"))


def test_a_data_dir_the_server_makes_is_private(tmp_path: Path) -> None:
    from examsync_server.runtime import check_data_dir

    check_data_dir(tmp_path / "new" / "data")
    assert mode(tmp_path / "new") == mode(tmp_path / "new" / "data") == 0o700


def test_the_admin_token_is_printed_only_when_the_server_made_it(
    tmp_path: Path, redis_url: str, servers: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    first = start_server(data, redis_url, env={"EXAMSYNC_ADMIN_TOKEN": ""})
    servers.append(first)
    token = (data / "admin_token").read_text().strip()
    assert len(token) >= 22
    assert f"Generated an admin token (kept in {data / 'admin_token'}): {token}" in (first.output())
    assert first.stop() == 0
    # started again, the token is the file's: the operator has it, nothing prints it again
    again = start_server(data, redis_url, env={"EXAMSYNC_ADMIN_TOKEN": ""})
    servers.append(again)
    assert again.stop() == 0
    assert token not in again.output() and "Generated" not in again.output()


def test_a_short_admin_token_is_refused_at_start(tmp_path: Path) -> None:
    for source in ("variable", "file"):
        data = tmp_path / source
        data.mkdir()
        env = {"EXAMSYNC_ADMIN_TOKEN": "x" * 21 if source == "variable" else ""}
        if source == "file":
            (data / "admin_token").write_text("short-token\n")
        result = examsync("serve", "--data-dir", str(data), "--port", "9", env=env, check=False)
        assert result.returncode == 2, (source, result.stdout, result.stderr)
        assert "needs at least 22" in result.stderr and "Traceback" not in result.stderr
