"""The engine (everything under ``cdc/``) names no database (issue #16).

A database is a package under ``connectors/``; the engine reaches it through
``cdc/spi.py`` and the connector registry only. This test reads every
``cdc/**/*.py`` and fails on an identifier or a string literal naming a
database, unless the string is help text for people: a docstring, or the
value of a keyword argument that only documents (``help=``, ``hint=``,
``description=``, ``examples=``). Comments are free. The C files under
``cdc/`` are checked the same way, with their comments removed.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3] / "cdc"
DATABASE = re.compile(r"postgres|mysql|mariadb|pg_|PgPosition", re.IGNORECASE)

# Keyword arguments whose strings are read by people, never branched on.
HELP_KEYWORDS = frozenset({
    "help",  # click options: --help text
    "hint",  # CdcError hints: what to do, printed with the error
    "description",  # pydantic Field docs (cdc config docs, JSON schema)
    "examples",  # pydantic Field examples in the generated config docs
})
# Calls whose positional argument at this index is help text.
HELP_ARGUMENTS = {
    "invalid": 1,  # cdc.config.problems.invalid(what, fix): the fix printed with a config error
}
# Module constants that are documentation (path relative to cdc/, name).
HELP_CONSTANTS = {
    ("config/docs.py", "_INTRO"),  # the Markdown introduction of the generated docs/CONFIG.md
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
        # A bare string after an assignment documents it (module and class attributes).
        if isinstance(node, ast.Module | ast.ClassDef):
            for prev, stmt in zip(node.body, node.body[1:], strict=False):
                if (isinstance(prev, ast.Assign | ast.AnnAssign) and isinstance(stmt, ast.Expr)
                        and isinstance(stmt.value, ast.Constant)):
                    found.add(id(stmt.value))
    return found


def _help_strings(tree: ast.AST, relative: str) -> set[int]:
    """ids of the string constants in help text (see HELP_*)."""
    found: set[int] = set()

    def take(value: ast.AST) -> None:
        found.update(id(n) for n in ast.walk(value) if isinstance(n, ast.Constant))

    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in HELP_KEYWORDS:
            take(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            index = HELP_ARGUMENTS.get(node.func.id)
            if index is not None and len(node.args) > index:
                take(node.args[index])
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and (relative, t.id) in HELP_CONSTANTS for t in node.targets
        ):
            take(node.value)
    return found


def python_findings(path: Path) -> list[str]:
    source = path.read_text()
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and DATABASE.search(tok.string):
            out.append(f"{path}:{tok.start[0]}: identifier {tok.string!r}")
    tree = ast.parse(source)
    relative = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    allowed = _docstrings(tree) | _help_strings(tree, relative)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in allowed and DATABASE.search(node.value)):
            out.append(f"{path}:{node.lineno}: string {node.value!r:.80}")
    return out


_C_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)


def c_findings(path: Path) -> list[str]:
    code = _C_COMMENT.sub(lambda m: "\n" * m.group().count("\n"), path.read_text())
    return [
        f"{path}:{n}: {line.strip()!r:.80}"
        for n, line in enumerate(code.splitlines(), 1)
        if DATABASE.search(line)
    ]


def test_the_engine_names_no_database() -> None:
    findings = [f for p in sorted(ROOT.rglob("*.py")) for f in python_findings(p)]
    findings += [f for p in sorted(ROOT.rglob("*.c")) for f in c_findings(p)]
    assert not findings, "the engine names a database:\n" + "\n".join(findings)


def test_the_check_sees_what_it_must(tmp_path: Path) -> None:
    """The checker itself: it finds names in code and strings, and lets help text be."""
    sample = (
        '"""About PostgreSQL."""\n'
        "import click\n"
        "pg_head = 1  # postgres\n"
        'KIND = "mysql"\n'
        '"""A MariaDB note on KIND."""\n'
        'opt = click.option("--x", help="MariaDB only")\n'
    )
    path = tmp_path / "name_check_sample.py"
    path.write_text(sample)
    found = python_findings(path)
    assert [f.split(": ", 1)[1] for f in found] == ["identifier 'pg_head'", "string 'mysql'"]
    c = tmp_path / "name_check_sample.c"
    c.write_text('/* PostgreSQL */\nstatic int x; // mysql\nconst char *k = "mariadb";\n')
    assert [f.split(": ", 1)[1] for f in c_findings(c)] == ["'const char *k = \"mariadb\";'"]
