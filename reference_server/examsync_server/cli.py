"""The `examsync` command: serve, demo, and admin work against a running server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from .config import (
    HTTP_SERVERS,
    SETTINGS,
    SettingInfo,
    Settings,
    load_or_create_secret,
    settings_from_env,
)
from .errors import StartupError
from .exam.plan_status import Action, allows
from .process.http_server import event_loop_runner, serve_http
from .runtime import Runtime, check_data_dir, freeze_startup_heap, lower_priority


def main() -> None:
    try:
        cli(auto_envvar_prefix="EXAMSYNC")
    except StartupError as exc:
        click.echo(f"examsync: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="examsync")
def cli() -> None:
    """examsync: answer sync for online exams (reference server and tools)."""


def _setting_options(command_name: str) -> Callable[[Any], Any]:
    """A flag for each setting that `command_name` takes (config.SETTINGS), default None:
    given, it wins over the setting's `EXAMSYNC_*` variable."""

    def decorate(command: Any) -> Any:
        for info in reversed([i for i in SETTINGS if command_name in i.commands]):
            command = _setting_option(info, command_name)(command)
        return command

    return decorate


def _setting_option(info: SettingInfo, command_name: str) -> Callable[[Any], Any]:
    help_text = (
        f"{info.meaning[:1].upper()}{info.meaning[1:]} ({info.variable}; default"
        f" {info.default_text})."
    )
    if info.kind is bool:
        pair = f"{info.flag}/--no-{info.flag[2:]}"
        return click.option(pair, info.name, default=None, help=help_text)
    names = [info.flag]
    if command_name == "sockets" and info.name == "socket_host":
        names.append("--host")  # the sockets command's one address
    kind: Any = {
        "processes": click.IntRange(1, 64),
        "http_server": click.Choice(HTTP_SERVERS),
    }.get(info.name, click.Path(path_type=Path) if info.kind is Path else info.kind)
    return click.option(*names, info.name, type=kind, default=None, help=help_text)


def _settings(options: dict[str, Any], web_default: str = "") -> Settings:
    """`serve` and `demo`: flags over variables; the admin token made if there is none."""
    settings = settings_from_env(**options)
    if not settings.process.web_dir:
        settings = settings.with_changes(web_dir=web_default)
    host = options.get("host")
    if host and not options.get("socket_host") and not os.environ.get("EXAMSYNC_SOCKET_HOST"):
        settings = settings.with_changes(socket_host=host)
    check_data_dir(settings.storage.data_dir)
    admin, created = load_or_create_secret(
        settings.storage.data_dir, "admin_token", settings.access.admin_token
    )
    # Shown once, when made here: a token from the variable, a flag or the data dir's file is
    # the operator's already, and printing it would only copy it into terminal logs.
    if created:
        click.echo(
            f"Generated an admin token (kept in {settings.storage.data_dir / 'admin_token'}):"
            f" {admin}"
        )
    return settings.with_changes(admin_token=admin)


@cli.command()
@_setting_options("serve")
def serve(**options: Any) -> None:
    """Run the reference server (HTTP API and socket server)."""
    settings = _settings(options)
    _run(settings, demo=False)


@cli.command()
@_setting_options("demo")
def demo(**options: Any) -> None:
    """Run the server with the seeds' sample plan (PLAN202401) loaded and prepared, and the web
    demo's pages."""
    from .web import AUTO

    settings = _settings(options, web_default=AUTO)
    _run(settings, demo=True)


def _run(settings: Settings, demo: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from .web import prepare_assets

    if prepare_assets(settings) is None:  # nothing to serve: the pages' URLs are not printed
        settings = settings.with_changes(web_dir="")
    if settings.process.processes > 1:
        from .process.supervision import supervise

        def ready(base: str) -> None:
            click.echo(f"examsync serving {base} with {settings.process.processes} processes")
            if demo:
                _load_demo(base, settings.access.admin_token, bool(settings.process.web_dir))

        sys.exit(supervise(settings, ready))
    event_loop_runner(settings)(_serve(settings, demo))


async def _start_process(settings: Settings) -> Runtime:
    """The runtime of a server process of its own (not of an app under test)."""
    lower_priority(settings.process.nice)  # before any thread starts: niceness is per thread
    runtime = await Runtime.start(settings)
    freeze_startup_heap()
    return runtime


async def _serve(settings: Settings, demo: bool) -> None:
    from .app import create_app

    runtime = await _start_process(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base = f"http://{settings.listen.host}:{settings.listen.port}"
    try:
        server = asyncio.create_task(serve_http(create_app(settings, runtime), settings, stop))
        await _wait_healthy(base, server)
        click.echo(f"examsync serving {base} (socket server {runtime.socket_url(None)})")
        if demo:
            await asyncio.to_thread(
                _load_demo, base, settings.access.admin_token, bool(settings.process.web_dir)
            )
        await server
    finally:
        await runtime.stop()


@cli.command()
@_setting_options("persister")
def persister(**options: Any) -> None:
    """Run only the answer persister (what `serve --processes N` starts beside its HTTP
    processes, which then run with EXAMSYNC_RUN_PERSISTER=0)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings_from_env(**options)
    if not settings.storage.redis_url:
        raise click.UsageError("the persister needs the servers' Redis: --redis-url")
    settings = settings.with_changes(run_socket_server=False, run_persister=True)
    event_loop_runner(settings)(
        _run_alone(settings, f"examsync persister on {settings.storage.sqlite_path}")
    )


@cli.command()
@_setting_options("sockets")
def sockets(**options: Any) -> None:
    """Run only the socket server (no HTTP), for scale beside `examsync serve` processes that
    run with EXAMSYNC_RUN_SOCKET_SERVER=0 and EXAMSYNC_PUBLIC_SOCKET_URL pointing here."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings_from_env(**options)
    if not settings.storage.redis_url:
        raise click.UsageError("the socket server needs the HTTP servers' Redis: --redis-url")
    check_data_dir(settings.storage.data_dir)
    # Saves over the socket are committed by the HTTP servers' persister.
    settings = settings.with_changes(run_socket_server=True, run_persister=False)
    if settings.process.processes > 1:
        from .process.supervision import supervise_sockets

        def ready(url: str) -> None:
            click.echo(f"examsync sockets on {url} with {settings.process.processes} processes")

        sys.exit(supervise_sockets(settings, ready))
    event_loop_runner(settings)(_run_alone(settings, "examsync sockets on {socket_url}"))


async def _run_alone(settings: Settings, banner: str) -> None:
    """A runtime with no HTTP server (the persister, the socket server) until a signal;
    `{socket_url}` in `banner` becomes where the socket server listens."""
    runtime = await _start_process(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    click.echo(banner.replace("{socket_url}", runtime.socket_url(None)))
    try:
        await stop.wait()
    finally:
        await runtime.stop()


async def _wait_healthy(base: str, server: asyncio.Task[None]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if server.done():
                server.result()  # raises what stopped it
                raise StartupError("the HTTP server stopped during start-up")
            try:
                if (await client.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise StartupError(f"the server did not become healthy at {base}")


def _load_demo(base: str, token: str, pages: bool) -> None:
    from .demo.sample import PLAN_ID, sample_package, sample_plan

    admin = AdminClient(base, token)
    status = admin.request("GET", f"/api/v1/admin/plans/{PLAN_ID}", ok=(200, 404))
    if "status" in status and not allows(status["status"], Action.REPLACE):
        click.echo(f"Demo plan {PLAN_ID} is {status['status']}; left as it is.")
    else:
        admin.request("PUT", f"/api/v1/admin/plans/{PLAN_ID}", json=sample_plan())
        admin.upload_package(PLAN_ID, sample_package())
        admin.request("POST", f"/api/v1/admin/plans/{PLAN_ID}/prepare")
        click.echo(f"Demo plan {PLAN_ID} loaded and prepared.")
    people = admin.request("GET", f"/api/v1/admin/plans/{PLAN_ID}/candidates")["candidates"]
    click.echo("\nDemo credentials (POST /api/v1/sessions):")
    for person in people[:4]:
        click.echo(
            f"  candidate {person['candidate_id']} authCode {person['candidate_auth_code']}"
            f" ({person['group_id']})"
        )
    click.echo("  supervisor SUP202301 authCode SUPAUTH01 (GROUP01)")
    click.echo(
        f"\nAdmin: examsync admin --url {base} status {PLAN_ID}   |   "
        f"start: examsync admin --url {base} start {PLAN_ID}"
    )
    click.echo(f"API contract: {base}/api/v1/openapi.json")
    if pages:
        click.echo("\nWeb demo:")
        click.echo(f"  candidate   {base}/candidate?plan={PLAN_ID}")
        click.echo(f"  supervisor  {base}/supervisor?plan={PLAN_ID}")
        # Signed in with the admin token on the page: never in a URL, which lands in histories.
        click.echo(f"  admin       {base}/admin?plan={PLAN_ID}  (sign in with the admin token)")


# -- admin ----------------------------------------------------------------------------------


class AdminClient:
    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}
        )

    def request(
        self, method: str, path: str, ok: tuple[int, ...] = (200, 201), **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise click.ClickException(f"cannot reach {self.client.base_url}: {exc}") from None
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code not in ok:
            error = body.get("error", {})
            raise click.ClickException(
                f"{method} {path}: {response.status_code} {error.get('code', '')}: "
                f"{error.get('message', response.text[:200])}"
                + (
                    f"\n{json.dumps(error.get('details'), ensure_ascii=False, indent=2)}"
                    if error.get("details")
                    else ""
                )
            )
        return body

    def upload(
        self, method: str, path: str, data: bytes, label: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Send a large body with a progress bar."""
        with click.progressbar(length=len(data), label=label, file=sys.stderr) as bar:

            def chunks() -> Iterator[bytes]:
                for start in range(0, len(data), 256 * 1024):
                    chunk = data[start : start + 256 * 1024]
                    bar.update(len(chunk))
                    yield chunk

            return self.request(
                method,
                path,
                content=chunks(),
                headers={"Content-Length": str(len(data)), **(headers or {})},
            )

    def upload_package(self, plan_id: str, data: bytes) -> dict[str, Any]:
        return self.upload(
            "PUT",
            f"/api/v1/admin/plans/{plan_id}/package",
            data,
            f"package {plan_id}",
            {
                "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
                "Content-Type": "application/zip",
            },
        )


@cli.group()
@click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, help="The server's base URL."
)
@click.option(
    "--token",
    default=None,
    help="Admin token (default: EXAMSYNC_ADMIN_TOKEN, then the data dir's admin_token file).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where to find the admin_token file.",
)
@click.pass_context
def admin(ctx: click.Context, url: str, token: str | None, data_dir: Path) -> None:
    """Admin work against a running server: import, package, prepare, start, end, status."""
    if token is None:
        token_file = data_dir / "admin_token"
        if not token_file.exists():
            raise click.ClickException(
                "no admin token: pass --token, set EXAMSYNC_ADMIN_TOKEN, "
                f"or run from where {token_file} exists"
            )
        token = token_file.read_text().strip()
    ctx.obj = AdminClient(url.rstrip("/"), token)


def _show(body: dict[str, Any]) -> None:
    click.echo(json.dumps(body, ensure_ascii=False, indent=2))


@admin.command("import")
@click.argument("plan_file", type=click.File("rb"))
@click.option("--plan-id", default=None, help="Default: exam_plan.plan_id in the file.")
@click.pass_obj
def import_plan(client: AdminClient, plan_file: Any, plan_id: str | None) -> None:
    """Create or replace a plan from a JSON file (exam_plan, stages, groups, candidates, ...)."""
    raw = plan_file.read()
    try:
        plan = json.loads(raw)
    except ValueError as exc:
        raise click.ClickException(f"{plan_file.name} is not JSON: {exc}") from None
    plan_id = plan_id or (plan.get("exam_plan") or {}).get("plan_id")
    if not plan_id:
        raise click.ClickException("no plan id: pass --plan-id or set exam_plan.plan_id")
    _show(
        client.upload(
            "PUT",
            f"/api/v1/admin/plans/{plan_id}",
            raw,
            f"plan {plan_id} ({len(plan.get('candidates', []))} candidates)",
            {"Content-Type": "application/json"},
        )
    )


@admin.command()
@click.argument("plan_id")
@click.argument("zip_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def package(client: AdminClient, plan_id: str, zip_file: Path) -> None:
    """Upload the exam package zip (its SHA-256 is sent and checked)."""
    _show(client.upload_package(plan_id, zip_file.read_bytes()))


def _action(name: str, help_text: str) -> None:
    @admin.command(name, help=help_text)
    @click.argument("plan_id")
    @click.pass_obj
    def command(client: AdminClient, plan_id: str) -> None:
        _show(client.request("POST", f"/api/v1/admin/plans/{plan_id}/{name}"))


_action("prepare", "Prepare a plan (seed 000): DB, Redis keys, queues; status ready.")
_action("start", "Start a prepared plan; stage clocks begin.")
_action("resync", "Rewrite a plan's Redis keys from SQLite.")


@admin.command()
@click.argument("plan_id")
@click.option(
    "--revoke-sessions",
    is_flag=True,
    help="Also revoke every candidate's session (they sign in again to flush late saves).",
)
@click.pass_obj
def end(client: AdminClient, plan_id: str, revoke_sessions: bool) -> None:
    """End a plan (seed 001): completed, exam_end to every socket."""
    body = {"revokeSessions": True} if revoke_sessions else {}
    _show(client.request("POST", f"/api/v1/admin/plans/{plan_id}/end", json=body))


@admin.command()
@click.argument("plan_id")
@click.option("--candidate", "candidates", multiple=True, help="A candidate id (repeatable).")
@click.option("--supervisor", "supervisors", multiple=True, help="A supervisor id (repeatable).")
@click.option("--all", "everyone", is_flag=True, help="Every session of the plan.")
@click.pass_obj
def revoke(
    client: AdminClient,
    plan_id: str,
    candidates: tuple[str, ...],
    supervisors: tuple[str, ...],
    everyone: bool,
) -> None:
    """Revoke sessions now: they are refused (401 session_revoked), their sockets closed."""
    if not (everyone or candidates or supervisors):
        raise click.UsageError("name --candidate or --supervisor ids, or --all")
    body = {"all": True} if everyone else {"candidates": candidates, "supervisors": supervisors}
    _show(client.request("POST", f"/api/v1/admin/plans/{plan_id}/sessions/revoke", json=body))


@admin.command()
@click.argument("plan_id")
@click.pass_obj
def status(client: AdminClient, plan_id: str) -> None:
    """Plan status, counts, queue depths."""
    _show(client.request("GET", f"/api/v1/admin/plans/{plan_id}"))


@admin.command()
@click.argument("plan_id")
@click.pass_obj
def candidates(client: AdminClient, plan_id: str) -> None:
    """Candidates with their auth codes and keys."""
    _show(client.request("GET", f"/api/v1/admin/plans/{plan_id}/candidates"))


@admin.command("dead-letters")
@click.argument("plan_id")
@click.option("--replay", is_flag=True, help="Put them back on their queues to be persisted.")
@click.option(
    "--id",
    "ids",
    type=int,
    multiple=True,
    help="Only this dead letter (repeatable; with --replay).",
)
@click.pass_obj
def dead_letters(client: AdminClient, plan_id: str, replay: bool, ids: tuple[int, ...]) -> None:
    """Queue entries that could not be persisted (seed 002 §5); --replay retries them."""
    if ids and not replay:
        raise click.UsageError("--id goes with --replay")
    path = f"/api/v1/admin/plans/{plan_id}/dead-letters"
    if replay:
        _show(client.request("POST", path + "/replay", json={"ids": list(ids)} if ids else {}))
    else:
        _show(client.request("GET", path))
