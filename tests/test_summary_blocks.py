"""Block Kit rendering of summaries: within Slack's limits whatever the size of the cluster, and saying
what it left out. Limits are checked by the same checker the recording Slack stand-in enforces."""

from __future__ import annotations

import re

from bot.model import CheckResult
from bot.slack.limits import MAX_HEADER_TEXT, MAX_MESSAGE_BLOCKS, MAX_SECTION_TEXT, check_message
from bot.slack.summary_blocks import SEE_ALL, render_summary
from bot.summary import HealthSummary, SummaryState, summarize
from tests.support.schedule import NOW, degraded_namespace, evidence_of, healthy_namespace, incident, pod

NAMESPACES_60 = tuple(f"team-{i:02d}" for i in range(60))


def _summary(objects: list[dict[str, object]], namespaces: tuple[str, ...], **kw: object) -> HealthSummary:
    return summarize(
        title="daily",
        namespaces=namespaces,
        generated_at=NOW,
        evidence=evidence_of(objects, list(namespaces)),
        **kw,  # type: ignore[arg-type]
    )


def _all_text(blocks: tuple[dict[str, object], ...]) -> str:
    return "\n".join(re.findall(r"'text': '([^']*)'", repr(blocks)))


def test_sixty_degraded_namespaces_stay_within_limits_and_say_what_was_left_out() -> None:
    objects = [o for ns in NAMESPACES_60 for o in degraded_namespace(ns)]
    summary = _summary(objects, NAMESPACES_60)
    message = render_summary(summary).to_json()
    assert check_message(message) == []
    blocks = message["blocks"]
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    shown = [b for b in blocks if b["type"] == "section" and ":red_circle:" in b["text"]["text"]]
    assert 20 <= len(shown) < 60
    note = blocks[-1]
    assert note["type"] == "context"
    note_text = note["elements"][0]["text"]
    left_out = 60 - len(shown)
    assert f"Left out: {left_out} namespaces with {left_out * 5} problems" in note_text
    assert SEE_ALL in note_text
    # Every namespace is either shown or named in the note.
    for ns in NAMESPACES_60:
        assert any(f"*{ns}*" in b["text"]["text"] for b in shown) or ns in note_text
    assert message["text"] == "60 namespaces: 300 problems"


def test_sixty_healthy_namespaces_fit_in_one_section() -> None:
    objects = [o for ns in NAMESPACES_60 for o in healthy_namespace(ns)]
    message = render_summary(_summary(objects, NAMESPACES_60)).to_json()
    assert check_message(message) == []
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    healthy = [text for text in sections if "*Healthy* (60)" in text]
    assert len(healthy) == 1
    assert "team-00 (3/3 pods)" in healthy[0]
    assert "team-59 (3/3 pods)" in healthy[0]
    assert not any(b["type"] == "context" and "Left out" in str(b) for b in message["blocks"])


def test_healthy_namespaces_past_the_section_limit_are_counted() -> None:
    namespaces = tuple(f"a-very-long-namespace-name-for-team-number-{i:03d}" for i in range(120))
    objects = [o for ns in namespaces for o in healthy_namespace(ns, apps=("app",))]
    message = render_summary(_summary(objects, namespaces)).to_json()
    assert check_message(message) == []
    text = _all_text(message["blocks"])
    match = re.search(r"and (\d+) more healthy namespaces", text)
    assert match is not None
    hidden = int(match.group(1))
    assert 0 < hidden < 120
    assert f"Left out: {hidden} healthy namespaces" in str(message["blocks"][-1])


def test_mixed_namespaces_put_the_worst_first() -> None:
    namespaces = ("calm", "stormy", "breezy")
    objects = [
        *healthy_namespace("calm"),
        *degraded_namespace("stormy"),
        *healthy_namespace("breezy"),
        pod("debug", "breezy", ready=False, waiting_reason="ImagePullBackOff"),
    ]
    blocks = render_summary(_summary(objects, namespaces)).to_json()["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert sections[0] == "*calm, stormy, breezy: 6 problems*"
    assert sections[1].startswith(":red_circle: *stormy*: 5 problems")
    assert sections[2].startswith(":red_circle: *breezy*: 1 problem ·")
    assert sections[3].startswith(":large_green_circle: *Healthy* (1): calm (3/3 pods)")


def test_one_namespace_with_hundreds_of_problems_is_cut_with_a_note() -> None:
    objects = [pod(f"worker-{i:03d}", ready=False, waiting_reason="CrashLoopBackOff") for i in range(300)]
    message = render_summary(_summary(objects, ("monitoring",))).to_json()
    assert check_message(message) == []
    section = next(b for b in message["blocks"] if ":red_circle:" in str(b))
    assert len(section["text"]["text"]) <= MAX_SECTION_TEXT
    assert re.search(r"…and \d+ more problems", section["text"]["text"])


def test_long_title_and_unreachable_cluster() -> None:
    summary = summarize(
        title="x" * 400,
        namespaces=["monitoring"],
        generated_at=NOW,
        evidence=None,
        collection_error="cluster unreachable: cannot list pods in monitoring: "
        + "connection refused " * 300,
        incidents=[incident(3)],
    )
    message = render_summary(summary).to_json()
    assert check_message(message) == []
    assert len(message["blocks"][0]["text"]["text"]) <= MAX_HEADER_TEXT
    assert "*Could not read the cluster*: cluster unreachable" in str(message["blocks"])
    assert "*Incidents*: 1 opened, 0 resolved, 1 still open" in str(message["blocks"])


def test_links_escaping_and_redaction() -> None:
    objects = degraded_namespace()
    checks = [CheckResult("grafana-datasources", "fail", "datasource <loki> & co: password=hunter2 rejected")]
    summary = _summary(
        objects,
        ("monitoring",),
        checks=checks,
        incidents=[incident(7, labels={"statefulset": "prometheus"})],
        slack_messages={7: ("C0MON", "1800000000.000100")},
        previous=SummaryState(at=NOW - 60),
    )
    text = str(render_summary(summary).to_json()["blocks"])
    assert "(<https://slack.com/archives/C0MON/p1800000000000100|incident #7>)" in text
    assert "<https://slack.com/archives/C0MON/p1800000000000100|#7>" in text  # in the incidents list
    assert "datasource &lt;loki&gt; &amp; co: password=*** rejected" in text
    assert "hunter2" not in text


def test_remediations_name_people_as_mentions() -> None:
    import dataclasses

    from bot.slack.summary_blocks import remediations_section
    from bot.summary import RemediationLine

    lines = (
        RemediationLine(
            3, 7, "slack:UALICE,UBOB", ("monitoring/StatefulSet/p",), "succeeded", "ok", NOW, NOW
        ),
        RemediationLine(4, None, "cli", (), "failed", "", NOW, NOW),
        RemediationLine(5, None, "slack:<!channel>", (), "failed", "", NOW, NOW),
    )
    summary = dataclasses.replace(_summary([], ("monitoring",)), remediations=lines)
    text = remediations_section(summary)["text"]["text"]
    assert "• execution e-3 for incident #7 by <@UALICE>, <@UBOB>: *succeeded*" in text
    assert "by cli" in text and "slack:UALICE" not in text
    assert "<!channel>" not in text  # not an id: shown as escaped text
