"""Bus names are spelt in one place each, and ``docs/bus.md`` lists exactly those.

Queues and routing keys live in ``edgeback_core.bus.topology``, RPC names in
``edgeback_core.messages``. The scan reads the source tree's syntax (no imports): in
``libs/``, ``services/`` and ``deploy/`` nothing but the topology module constructs a
``QueueSpec``, publishes, binds or declares with a literal name, serves or calls an
RPC by a literal name, or holds a string shaped like a routing key
(``<domain>.event|command.<name>``), and no service serves messages outside its
``handlers.py``; nowhere, tests included, is a known queue, routing key or catalog
RPC name written out again as a literal.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from edgeback_core.bus import topology
from edgeback_core.ids import BackupHostId
from edgeback_core.messages import catalog_rpc
from edgeback_core.messages.channels import CHANNELS

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = Path("libs/edgeback_core/bus/topology.py")
RPC_NAMES = Path("libs/edgeback_core/messages/catalog_rpc.py")
PRODUCTION = ("libs", "services", "deploy")
BUS_DOC = ROOT / "docs" / "bus.md"

ROUTING_KEY_SHAPE = re.compile(r"[a-z0-9_]+\.(?:event|command)\.[a-z0-9_.*#]+")
QUEUE_NAMES = {spec.name for spec in topology.QUEUES}
ROUTING_KEYS = set(topology.ROUTING_KEYS) | {b for s in topology.QUEUES for b in s.bindings}
RPCS = {v for k, v in vars(catalog_rpc).items() if k.isupper() and isinstance(v, str)}
_NAMED_BY_FIRST_ARG = {"serve_rpc", "declare_queue", "declare_exchange", "bind"}


def _literal(node: ast.expr | None) -> bool:
    is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
    return is_text or isinstance(node, ast.JoinedStr)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _call_violation(call: ast.Call) -> str | None:
    name = _callee(call)
    keywords = {k.arg: k.value for k in call.keywords}
    if name == "QueueSpec":
        return "a QueueSpec outside the topology module"
    if name == "publish":
        key = call.args[1] if len(call.args) > 1 else keywords.get("routing_key")
        return "a literal routing key" if _literal(key) else None
    first = call.args[0] if call.args else None
    if name in _NAMED_BY_FIRST_ARG or (name == "call" and len(call.args) >= 3):
        return f"a literal name given to {name}()" if _literal(first) else None
    return None


def _literal_violation(text: str, *, production: bool, rpc_module: bool) -> str | None:
    if text in QUEUE_NAMES or text in ROUTING_KEYS:
        return f"{text!r} spelt again (use the topology module's constant)"
    if text in RPCS and not rpc_module:
        return f"{text!r} spelt again (use edgeback_core.messages.catalog_rpc)"
    if production and ROUTING_KEY_SHAPE.fullmatch(text):
        return f"routing key {text!r} outside the topology module"
    return None


def violations(path: Path, source: str) -> list[str]:
    """Where ``source`` (the file at ``path``, relative to the repository) breaks the rules."""
    if path == TOPOLOGY:
        return []
    production = path.parts[0] in PRODUCTION
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        problem = None
        if isinstance(node, ast.Call) and production:
            problem = _call_violation(node)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            problem = _literal_violation(
                node.value, production=production, rpc_module=path == RPC_NAMES
            )
        if problem:
            found.append(f"{path}:{getattr(node, 'lineno', 0)}: {problem}")
    return found


def source_files() -> list[Path]:
    roots = [ROOT / name for name in (*PRODUCTION, "tests")]
    files = [p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(p.relative_to(ROOT) for p in files)


def test_bus_names_are_declared_only_where_they_belong() -> None:
    files = source_files()
    assert TOPOLOGY in files and RPC_NAMES in files
    found = [v for path in files for v in violations(path, (ROOT / path).read_text())]
    assert found == []


def served_outside_handlers(path: Path, source: str) -> list[str]:
    """Where a service module other than ``handlers.py`` serves an RPC or consumes a queue."""
    if path.parts[0] != "services" or path.name == "handlers.py":
        return []
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
    return [f"{path}:{c.lineno}" for c in calls if _callee(c) in {"serve_rpc", "consume"}]


def test_services_keep_their_message_handlers_in_handlers_modules() -> None:
    found = [
        place
        for path in source_files()
        for place in served_outside_handlers(path, (ROOT / path).read_text())
    ]
    assert found == []
    planted = "async def f(bus, h):\n    await bus.serve_rpc(NAME, h, object)"
    assert served_outside_handlers(Path("services/x/edgeback_x/rpc.py"), planted)


PLANTED = {
    "queue spec": "Q = QueueSpec(name='a.b', exchange='events', bindings=('#',))",
    "queue spec by module": "import t\nQ = t.QueueSpec(name='a.b', exchange='events', bindings=())",
    "literal routing key": "async def f(bus, m):\n    await bus.publish('events', 'a.b.c', m)",
    "f-string routing key": "async def f(b, m, h):\n    await b.publish('events', f'run.{h}', m)",
    "keyword routing key": "async def f(b, m):\n    await b.publish('events', routing_key='k')",
    "routing key constant": "STARTED = 'run.event.started'",
    "known routing key": f"KEY = {topology.HOST_HEARTBEAT!r}",
    "known queue name": f"NAME = {topology.CATALOG_HEARTBEATS.name!r}",
    "catalog rpc name": f"NAME = {catalog_rpc.HOST_ACTIVATE!r}",
    "served by literal": "async def f(bus, h):\n    await bus.serve_rpc('x.y', h, object)",
    "called by literal": "async def f(bus, r):\n    await bus.call('x.y', r, object, timeout=1)",
    "declared by literal": "async def f(ch):\n    await ch.declare_queue('x.y', durable=True)",
}


@pytest.mark.parametrize("source", PLANTED.values(), ids=PLANTED.keys())
def test_a_planted_name_is_caught(source: str) -> None:
    assert violations(Path("services/x/edgeback_x/handlers.py"), source)


def test_tests_may_declare_their_own_queues_but_not_spell_known_names() -> None:
    own = "Q = QueueSpec(name='t.q', exchange='events', bindings=('x.event.y',))"
    assert violations(Path("tests/unit/test_x.py"), own) == []
    known = f"Q = QueueSpec(name={topology.CATALOG_HEARTBEATS.name!r}, exchange='events')"
    assert violations(Path("tests/unit/test_x.py"), known)


def test_names_from_their_modules_pass() -> None:
    source = (
        "from edgeback_core.bus.topology import CATALOG_HEARTBEATS, HOST_HEARTBEAT\n"
        "async def f(bus, m, h):\n"
        "    await bus.publish('events', HOST_HEARTBEAT, m)\n"
        "    await bus.consume(CATALOG_HEARTBEATS, h, object)\n"
        "    await bus.call(names.HOST_GET, m, object, timeout=1)\n"
        "    log.info('catalog.schema.migrated')\n"
    )
    assert violations(Path("services/x/edgeback_x/handlers.py"), source) == []


# --- docs/bus.md holds the module's tables -----------------------------------------------
def _table_rows(marker: str) -> list[list[str]]:
    """The body rows of the table that follows ``<!-- marker -->`` in docs/bus.md."""
    lines = BUS_DOC.read_text().splitlines()
    start = lines.index(f"<!-- {marker} -->") + 1
    rows: list[list[str]] = []
    for line in lines[start + 2 :]:  # header and separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _queue_row(spec: topology.QueueSpec) -> list[str]:
    bindings = ", ".join(f"`{b}`" for b in spec.bindings)
    delays = ", ".join(f"{d:g}" for d in spec.retry_delays)
    limits = f"{spec.prefetch} / {spec.delivery_limit} / {spec.max_retries}"
    return [f"`<p>{spec.name}`", f"`{spec.exchange}`", bindings, limits, delays]


def test_docs_list_every_work_queue_as_declared() -> None:
    documented = [row[:5] for row in _table_rows("topology: work queues")]
    per_host = [queue(BackupHostId("<host_id>")) for queue in topology.PER_HOST_QUEUES]
    expected = [_queue_row(spec) for spec in (*topology.QUEUES, *per_host)]
    assert sorted(documented) == sorted(expected), "docs/bus.md work queues: " + "\n".join(
        "| " + " | ".join(row) + " | <purpose> |" for row in expected
    )


def test_every_routing_key_has_its_asyncapi_channel() -> None:
    assert {channel.routing_key for channel in CHANNELS} == set(topology.ROUTING_KEYS)


def test_docs_list_every_routing_key() -> None:
    documented = sorted(row[0] for row in _table_rows("topology: routing keys"))
    per_host = topology.run_routing_key(BackupHostId("<host_id>"))
    assert documented == sorted(f"`{key}`" for key in (*topology.ROUTING_KEYS, per_host))


def test_docs_list_every_exchange() -> None:
    names = [row[0] for row in _table_rows("topology: exchanges")]
    top = topology.Topology(prefix="<p>")
    expected = [top.exchange(kind) for kind in get_args(topology.ExchangeKind)]
    assert all(f"`{name}`" in names for name in expected)
