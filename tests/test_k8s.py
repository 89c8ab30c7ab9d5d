"""The Kubernetes manifests: generated files up to date with shared.topics, ACLs exactly the
services' access, the policy rules, and (e2e: the operators' CRDs are fetched once) every overlay
rendered and valid."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared import topics
from tools import k8s


def test_generated_files_are_up_to_date() -> None:
    stale = k8s.stale()
    assert not stale, f"run `python -m tools.k8s generate` and commit: {', '.join(map(str, stale))}"


def test_a_topic_for_every_topic_and_its_dead_letters() -> None:
    found = {t["spec"]["topicName"]: t for t in k8s.topic_resources()}
    assert set(found) == {s.name for s in topics.all_topic_specs()}
    for spec in topics.TOPICS:
        assert found[spec.name]["spec"]["partitions"] == spec.partitions
        assert topics.dlq(spec.name) in found
    for t in found.values():
        assert t["spec"]["replicas"] == 3
        assert t["spec"]["config"]["min.insync.replicas"] == 2
    assert (
        found[topics.dlq(topics.ROUTING)]["spec"]["config"]["retention.ms"]
        > found[topics.ROUTING]["spec"]["config"]["retention.ms"]
    )


def _allowed(user: dict[str, Any], kind: str, name: str, op: str) -> bool:
    return any(
        r["resource"]["type"] == kind and r["resource"]["name"] == name and op in r["operations"]
        for r in user["spec"]["authorization"]["acls"]
    )


def test_each_principal_gets_exactly_its_access() -> None:
    users = {u["metadata"]["name"]: u for u in k8s.user_resources()}
    assert set(users) == {k8s.kafka_user(p) for p in topics.PRINCIPALS}
    routing, sessions = users["switchboard-routing"], users["switchboard-sessions"]
    assert _allowed(routing, "topic", topics.ROUTING, "Write")
    assert _allowed(routing, "group", f"routing.{topics.CONVERSATIONS}", "Read")
    assert _allowed(routing, "topic", topics.dlq(topics.CONVERSATIONS), "Write")
    assert not _allowed(sessions, "topic", topics.ROUTING, "Write")
    assert not _allowed(sessions, "group", f"routing.{topics.CONVERSATIONS}", "Read")
    assert _allowed(sessions, "topic", topics.SESSIONS, "Read")  # the gateway's tail
    for name, access in topics.PRINCIPALS.items():
        acls = users[k8s.kafka_user(name)]["spec"]["authorization"]["acls"]
        written = {r["resource"]["name"] for r in acls if "Write" in r["operations"]}
        assert written == set(access.write_topics())
        assert all(r["resource"]["patternType"] == "literal" for r in acls)


def test_workloads_are_locked_down() -> None:
    docs = [d for s in k8s.SERVICES for d in k8s.app_resources(s)]
    problems = k8s.policy(docs + k8s.topic_resources() + k8s.user_resources())
    assert [p for p in problems if not p.startswith(("Cluster:", "Database:"))] == []  # no database here
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "sessions")
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > k8s.DRAIN_S + k8s.PRESTOP_S
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SESSIONS_HTTP_HOST"]["value"] == "0.0.0.0"
    assert env["SESSIONS_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "switchboard-db-sessions"
    assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "switchboard-sessions"


def test_policy_names_what_breaks_the_rules() -> None:
    docs = [d for s in k8s.SERVICES for d in k8s.app_resources(s)] + k8s.user_resources()
    broken = copy.deepcopy(docs)
    container = next(d for d in broken if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["capabilities"]["drop"] = []
    container["env"].append({"name": "ROUTING_DB_PASSWORD", "value": "hunter2"})
    container["readinessProbe"]["httpGet"]["path"] = "/health"
    broken.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "leak"}, "data": {}})
    broken = [d for d in broken if d["metadata"]["name"] != "switchboard-presence"]
    broken.append(
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "pg"},
            "spec": {"enableSuperuserAccess": True, "managed": {"roles": [{"name": "sb_routing", "superuser": True}]}},
        }
    )
    text = "\n".join(k8s.policy(broken))
    for expected in (
        "must drop ALL capabilities",
        "ROUTING_DB_PASSWORD has a literal value",
        "readinessProbe must GET /health/ready",
        "Secret/leak",
        "KafkaUser/switchboard-presence: missing",
        "KafkaTopic: missing",
        "role sb_routing must not be privileged",
        "enableSuperuserAccess",
        "schema presence must exist",
    ):
        assert expected in text, expected


def test_alerts_must_use_exported_metrics() -> None:
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "switchboard_no_such_metric > 0"}]}]},
    }
    assert k8s._metrics_policy([rule]) == [
        "PrometheusRule/r: metric switchboard_no_such_metric is not exported by any service"
    ]
    assert "switchboard_outbox_oldest_seconds" in k8s.exported_metrics()


def test_every_expression_is_found() -> None:
    docs = [
        {
            "kind": "PrometheusRule",
            "metadata": {"name": "r"},
            "spec": {
                "groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}, {"record": "B", "expr": "x"}]}]
            },
        },
        {
            "kind": "ConfigMap",
            "metadata": {"name": "switchboard-grafana-dashboard"},
            "data": {"d.json": json.dumps(k8s.dashboard())},
        },
    ]
    found = k8s.expressions(docs)
    assert found[:2] == [("PrometheusRule/r: A", "up == 0"), ("PrometheusRule/r: B", "x")]
    assert len(found) == 2 + sum(len(p[2]) for p in k8s.PANELS)


def test_strict_schemas_refuse_unknown_fields() -> None:
    schema = k8s._strict(
        {
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        }
    )
    assert schema["additionalProperties"] is False
    assert schema["properties"]["spec"]["additionalProperties"] is False
    kept = k8s._strict({"type": "object", "properties": {}, "x-kubernetes-preserve-unknown-fields": True})
    assert "additionalProperties" not in kept


@pytest.mark.e2e  # the operators' CRDs (and kustomize, without kubectl) are downloaded on the first run, then cached
def test_every_overlay_renders_and_validates() -> None:
    assert k8s.check() == 0
    schemas = k8s.crd_schemas(k8s.fetch_crds())
    docs = k8s.render(k8s.KUBE)
    kinds = {d["kind"] for d in docs}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "Database", "ScheduledBackup"} <= kinds
    assert {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule", "Ingress"} <= kinds
    broken = copy.deepcopy(docs)
    next(d for d in broken if d["kind"] == "KafkaTopic")["spec"]["replica"] = 3
    next(d for d in broken if d["kind"] == "Cluster")["spec"]["instances"] = "3"
    dep = next(d for d in broken if d["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    rule = next(d for d in broken if d["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "sum by (topic (switchboard_dead_letters_total)"
    problems = "\n".join(k8s.validate(broken, schemas))
    assert "SwitchboardDeadLettersGrowing: PromQL: " in problems
    assert "'replica' was unexpected" in problems
    assert "spec.instances: '3' is not of type 'integer'" in problems
    assert "'imagePullPolicyy' was unexpected" in problems
    single = k8s.render(k8s.KUBE / "overlays" / "single-node")
    assert all(d["spec"]["replicas"] == 1 for d in single if d["kind"] in ("Deployment", "KafkaTopic", "KafkaNodePool"))
    assert not {"ScaledObject", "HorizontalPodAutoscaler"} & {d["kind"] for d in single}
