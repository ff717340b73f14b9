"""The API commands' common ground: their options (``--api``, ``--ca-file``,
``--output``), how each verb is declared (help, an example, its handler), the
session commands ``login`` / ``logout``, and :func:`run_api`, which opens the client.

Light on purpose: ``edgeback disk`` builds the same parser, so the HTTP client and
the session file are imported only when an API command runs.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeback_cli import output

if TYPE_CHECKING:
    from edgeback_cli.apiclient import ApiClient
    from edgeback_cli.credentials import Target

Raw = argparse.RawDescriptionHelpFormatter
if TYPE_CHECKING:
    Groups = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    Groups = argparse._SubParsersAction


@dataclass(frozen=True, slots=True, kw_only=True)
class Ctx:
    """What a handler gets: the client (token set when there is one) and the options."""

    client: ApiClient
    target: Target
    as_json: bool
    environ: Mapping[str, str]

    def show(self, data: Any, columns: output.Columns = (), *, one: bool = False) -> None:
        output.show(data, as_json=self.as_json, columns=columns, one=one)


Handler = Callable[[Ctx, argparse.Namespace], int]


def common_options() -> argparse.ArgumentParser:
    """Options of every API command (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("API")
    where.add_argument(
        "--api",
        metavar="URL",
        help="API address (default: $EDGEBACK_API_URL, the login's, http://127.0.0.1:8440)",
    )
    where.add_argument(
        "--ca-file",
        metavar="PEM",
        help="CA the API's https certificate must chain to "
        "(default: $EDGEBACK_API_CA_FILE, the login's, system CAs)",
    )
    where.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for scripts",
    )
    return common


def group(groups: Groups, name: str, help_text: str) -> Groups:
    parser = groups.add_parser(name, help=help_text, description=help_text, formatter_class=Raw)
    return parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")


def add_group_examples(parser: argparse.ArgumentParser) -> None:
    """Give every command group without an epilog an ``examples:`` one: each of its
    commands' example (a subgroup's first), so ``edgeback job --help`` shows how to
    use what it lists."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        examples: list[str] = []
        for child in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
            add_group_examples(child)
            lines = (child.epilog or "").splitlines()
            if lines and lines[0] in ("example:", "examples:"):
                examples += lines[1:2] if lines[0] == "examples:" else lines[1:]
        if parser.epilog is None and examples:
            parser.epilog = "\n".join(["examples:", *examples])


def verb(
    verbs: Groups,
    name: str,
    help_text: str,
    example: str,
    handler: Handler,
    *,
    token: bool = True,
) -> argparse.ArgumentParser:
    """A command with its help, an example and its handler; ``token``: needs a login."""
    parser = verbs.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=f"example:\n  {example}",
        formatter_class=Raw,
        parents=[common_options()],
    )
    parser.set_defaults(handler=handler, needs_token=token)
    return parser


def sends(
    method: str,
    path: str,
    columns: output.Columns = (),
    *,
    body: Callable[[argparse.Namespace], Any] | None = None,
    done: str = "",
) -> Handler:
    """A handler that sends one request (``{name}`` in ``path`` and ``done`` filled from
    the arguments) and shows the answer as one item, or prints ``done`` (no answer)."""

    def handler(ctx: Ctx, args: argparse.Namespace) -> int:
        given = vars(args)
        sent = None if body is None else body(args)
        answer = ctx.client.request(method, path.format(**given), body=sent)
        if done:
            print(done.format(**given), file=sys.stderr)
        else:
            ctx.show(answer, columns, one=True)
        return 0

    return handler


def listing(
    path: str, columns: output.Columns, query: Callable[[argparse.Namespace], dict[str, Any]]
) -> Handler:
    """A handler that shows up to ``--limit`` items of a paged list."""

    def handler(ctx: Ctx, args: argparse.Namespace) -> int:
        from edgeback_cli.apiclient import fetch_all  # noqa: PLC0415 - API commands only

        found = fetch_all(ctx.client, path.format(**vars(args)), query(args), args.limit)
        ctx.show(found, columns)
        return 0

    return handler


def add_session(groups: Groups) -> None:
    login = verb(
        groups,
        "login",
        "sign in to the API; the session is kept for the next commands",
        "edgeback login --api https://backup.example:8440 --user admin",
        _login,
        token=False,
    )
    login.add_argument("--user", help="user name (asked for when not given)")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (scripts) instead of asking",
    )
    verb(
        groups,
        "logout",
        "end the session: the token is revoked and forgotten",
        "edgeback logout",
        _logout,
    )


def _login(ctx: Ctx, args: argparse.Namespace) -> int:
    from edgeback_cli import credentials  # noqa: PLC0415 - API commands only

    name = args.user or input("user: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
    ctx.client.token = None  # never send an older session's token along
    session = ctx.client.request("POST", "/auth/login", body={"name": name, "password": password})
    path = credentials.session_path(ctx.environ)
    saved = credentials.Saved(
        api_url=ctx.target.api_url,
        token=session["token"],
        user=name,
        expires_at=session.get("expires_at"),
        ca_file=ctx.target.ca_file,
    )
    credentials.save(path, saved)
    user = session["user"]
    summary = {
        "user": name,
        "role": user.get("role"),
        "api": ctx.target.api_url,
        "expires_at": saved.expires_at,
        "session_file": str(path),
    }
    ctx.show(summary, [(k.upper(), k) for k in summary], one=True)
    return 0


def _logout(ctx: Ctx, args: argparse.Namespace) -> int:
    from edgeback_cli import credentials  # noqa: PLC0415 - API commands only

    ctx.client.request("POST", "/auth/logout")
    path = credentials.session_path(ctx.environ)
    saved = credentials.load(path)
    if saved is not None and saved.token == ctx.target.token:
        credentials.remove(path)
    print(f"signed out of {ctx.target.api_url}", file=sys.stderr)
    return 0


def run_api(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run an API command's handler with a client for the API it names."""
    from edgeback_cli import credentials  # noqa: PLC0415 - API commands only
    from edgeback_cli.apiclient import ApiClient  # noqa: PLC0415

    saved = credentials.load(credentials.session_path(environ))
    target = credentials.target(environ, api=args.api, ca_file=args.ca_file, saved=saved)
    if args.needs_token:
        target.need_token()
    with ApiClient(target.api_url, token=target.token, ca_file=target.ca_file) as client:
        ctx = Ctx(client=client, target=target, as_json=args.output == "json", environ=environ)
        handler: Handler = args.handler
        return handler(ctx, args)
